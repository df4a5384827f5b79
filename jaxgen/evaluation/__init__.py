"""Evaluation: Inception features, FID/KID/IS, paired image metrics.

Modules (import the one you need; nothing is imported eagerly here):
  metrics     FID, KID, Inception Score, precision/recall (+ paired metrics).
  paired      L1, PSNR and SSIM between output and target images.
  features    streaming Inception feature extraction and FID statistics.
  statistics  running moments, statistics npz files, reference-stats paths.
  inception   the Flax FID InceptionV3 and its input preprocessing.
  resize      resize modes reproducing TF/pytorch-fid/clean-fid resizing.
  weights     locating/converting the Inception weights (no downloads).
  torch_pickle  torch-free reader of torch checkpoints / TorchScript files.
"""
