"""The studies of launch/stability.py: each family's recipes on its real data.

A recipe is a tuple of `--config.` overrides on top of its study's config
and base overrides; launch/stability.py's docstring describes the studies
and how to run them. The table lives in its own module to keep the runner
short; it only names configs, data folders and overrides.
"""

import os
from typing import Dict, NamedTuple, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
CIFAR = os.path.join(DATA, "cifar10_catdog")
SIGNATURES = os.path.join(DATA, "signatures")
DIFFAUG = "--config.gan.diffaug=color,translation,cutout"
HINGE_SN = ("--config.gan.loss=hinge", "--config.gan.d_spectral_norm=true")
# SNGAN's discriminator (Miyato et al. 2018) for the DCGAN families: hinge
# loss, spectral norm, no BatchNorm.
SNGAN_D = (*HINGE_SN, "--config.model.d_norm=none")
# Label swapping with a projection D and an auxiliary classifier that starts
# from the study's pretrained aux_classifier run (its weight per recipe).
SWAP_INIT = ("--config.model.label_injection=projection",
             "--config.gan.label_swap=0.5",
             "--config.gan.aux_classifier_init={out}/aux_classifier")


# The evaluation classifier of CIFAR cats vs dogs (32 px photos).
CIFAR_CLASSIFIER = ("configs/classifier.py:steps=3000",
                    f"--config.data.root={CIFAR}")


class Study(NamedTuple):
  config: str                       # configs/<file>.py:variant
  base: Tuple[str, ...]             # Overrides of every recipe.
  recipes: Dict[str, Tuple[str, ...]]
  compare: Dict[str, object]        # compare_lib.compare keyword arguments.
  classifier: Tuple[str, ...] = ()  # Config + overrides of a classifier run.
  # A second evaluation classifier of another architecture: G is trained
  # against a classifier of the first one's architecture (another seed),
  # and class cues that fool that architecture could fool its twin too.
  check_classifier: Tuple[str, ...] = ()
  # Runs that recipes build on (name -> config + overrides), trained after
  # the classifier; "{out}" in a recipe's override is the study's folder.
  pretrained: Dict[str, Tuple[str, ...]] = {}


# The Siamese GAN at the config's own widths (DCGAN's 64, four times the
# compute of width 32 per step) with an EMA generator.
WIDTH64_EMA = ("--config.model.g_width=64", "--config.model.d_width=64",
               "--config.gan.ema_decay=0.999")


def both_optims(**fields):
  """Overrides that set `fields` in both g_optim and d_optim."""
  return tuple(f"--config.{opt}.{field}={value}"
               for opt in ("g_optim", "d_optim")
               for field, value in fields.items())


def linear_decay(start: float):
  """Overrides that decay both learning rates linearly to 0 from the
  fraction `start` of the run's steps (jaxgen/optim.py "linear")."""
  return both_optims(schedule="linear", decay_start=start)


def width64_decay_at(lr: str):
  """width64_ema_decay with both learning rates at `lr`, evaluated and
  sampled every 5 epochs (no effect on training; less of the budget spent
  evaluating)."""
  return (*WIDTH64_EMA, "--config.train.num_steps=7200",
          *linear_decay(0.8334), *both_optims(lr=lr),
          "--config.train.eval_every=780", "--config.train.sample_every=780")


# The class-conditional Siamese recipes build on one another: the class in
# G's code and a projection D; + class-conditional BatchNorm in G; + AC-GAN's
# class head on D.
LR4_COND = (*width64_decay_at("4e-4"), "--config.model.num_classes=2")
LR4_COND_NORM = (*LR4_COND, "--config.model.g_class_norm=true")
LR4_COND_NORM_AC = (*LR4_COND_NORM, "--config.siamese.d_class_weight=1.0",
                    "--config.siamese.g_class_weight=1.0")
# The same with SNGAN's residual G and D at the study config's width 32.
RESNET32_COND_NORM_AC = (
    *(o for o in LR4_COND_NORM_AC if "_width=" not in o),
    "--config.model.arch=resnet")


STUDIES = {
    "siamese": Study(
        config="configs/siamese_gan.py:width=32,steps=6000",
        # In-training FID (5000 images every 10 epochs) would cost more than
        # the training at this size: the runs keep the latest checkpoint,
        # which compare.py scores.
        base=(f"--config.data.root={CIFAR}", "--config.data.source=folder",
              "--config.eval.fid_every=0",
              "--config.train.best_metric=eval/swd"),
        recipes={
            "baseline": (),
            "diffaug": (DIFFAUG,),
            "ema": ("--config.gan.ema_decay=0.999",),
            "diffaug_ema": (DIFFAUG, "--config.gan.ema_decay=0.999"),
            "width64_ema": WIDTH64_EMA,
            # The same runs sampled with G's stored BatchNorm averages (the
            # only way before gan.bn_recalibrate; training is identical).
            "width64_ema_running_bn": (*WIDTH64_EMA,
                                       "--config.gan.bn_recalibrate=0"),
            # 1.5 times the steps (58 epochs).
            "width64_ema_9000": (*WIDTH64_EMA,
                                 "--config.train.num_steps=9000"),
            # 7200 steps (the 30-40 min budget alone), the learning rates of
            # G and D constant for 6000 (int(7200 * 0.8334)), then linearly
            # to 0; or from step 4680 (0.65).
            "width64_ema_decay": (*WIDTH64_EMA,
                                  "--config.train.num_steps=7200",
                                  *linear_decay(0.8334)),
            "width64_ema_decay_4680": (*WIDTH64_EMA,
                                       "--config.train.num_steps=7200",
                                       *linear_decay(0.65)),
            # width64_ema_decay with both learning rates doubled to 4e-4:
            # FID still fell by ~10 between 6000 and 9000 constant steps, so
            # the runs are far from converged.
            "width64_ema_decay_lr4": width64_decay_at("4e-4"),
            # The same at 6e-4 and 8e-4: 4e-4 beat 2e-4 by ~11 FID, so the
            # pace of learning still limits these runs.
            "width64_ema_decay_lr6": width64_decay_at("6e-4"),
            "width64_ema_decay_lr8": width64_decay_at("8e-4"),
            # width64_ema_decay_lr4 with DiffAugment: by its last 1000 steps
            # D scores the real images ~0.97 and the fakes ~0.02 (d_real,
            # d_fake), the overfitting that augmentation counters.
            "width64_ema_decay_lr4_diffaug": (*width64_decay_at("4e-4"),
                                              DIFFAUG),
            # width64_ema_decay_lr4 with the hinge loss and a spectrally
            # normalised encoder and heads without BatchNorm (SNGAN, Miyato
            # et al. 2018): D's Lipschitz bound in place of augmentation
            # against its late overconfidence.
            "width64_ema_decay_lr4_hinge_sn": (*width64_decay_at("4e-4"),
                                               *SNGAN_D),
            # width64_ema_decay_lr4 class-conditional (configs/
            # siamese_gan.py:cond): G asked for cat or dog, a projection D,
            # so that each sample must look like its class to D; scored
            # also by a cat/dog classifier on samples asked for each class.
            "width64_ema_decay_lr4_cond": LR4_COND,
            # The same with a per-class scale and shift after each of G's
            # BatchNorms (conditional batch norm): without it, samples of
            # one code asked for cat and for dog hardly differ.
            "width64_ema_decay_lr4_cond_norm": LR4_COND_NORM,
            # width64_ema_decay_lr4_cond_norm with AC-GAN's class head on
            # D's features (configs/siamese_gan.py:cond,ac): the projection
            # alone let G draw the same animal-coloured shapes for both
            # classes (a classifier found the class asked for in 63%).
            "width64_ema_decay_lr4_cond_norm_ac": LR4_COND_NORM_AC,
            # The same with DiffAugment: by the end its class head scores
            # 99% of the real training images right (d_cls_acc) and D's
            # adversarial head is as overconfident as lr4's; augmented
            # reals are harder to memorise for both heads.
            "width64_ema_decay_lr4_cond_norm_ac_diffaug": (*LR4_COND_NORM_AC,
                                                           DIFFAUG),
            # width64_ema_decay_lr4_cond_norm_ac with G's similarity term
            # weighted 0.1 or 0 (D still trains the similarity head): late
            # in those runs the head tells real-real from real-fake pairs
            # almost surely and its G term is 3-4 times the adversarial one,
            # a pull towards each paired real image's features.
            "width64_ema_decay_lr4_cond_norm_ac_gsim01": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.1"),
            "width64_ema_decay_lr4_cond_norm_ac_gsim0": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0"),
            # width64_ema_decay_lr4_cond_norm_ac, and its gsim0, with D's
            # BatchNorm normalising each step's real and generated images
            # as one batch (gan.d_joint_batch): in training mode D scored
            # held-out real images 0.96 and samples 0.004, in eval mode
            # 0.82 and 0.14; the separate batches' statistics told it
            # which was which.
            "width64_ema_decay_lr4_cond_norm_ac_joint": (
                *LR4_COND_NORM_AC, "--config.gan.d_joint_batch=True"),
            "width64_ema_decay_lr4_cond_norm_ac_gsim0_joint": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.gan.d_joint_batch=True"),
            # width64_ema_decay_lr4_cond_norm_ac_gsim0 with LayerNorm in
            # place of the encoder's BatchNorm: each image judged on its
            # own, without the batch statistics (separate or joint) and
            # without the spectral norm that kept SNGAN's D near chance.
            "width64_ema_decay_lr4_cond_norm_ac_gsim0_ln": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.model.d_norm=layer"),
            # width64_ema_decay_lr4_cond_norm_ac_gsim0 with lazy R1 on the
            # real images (gamma 1, every 16 D updates, as in the pix2pix
            # and signature studies): its D scores the training images
            # 0.93 against 0.07 for the fakes; R1 flattens D around the
            # real images instead of augmenting them.
            "width64_ema_decay_lr4_cond_norm_ac_gsim0_r1": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.gan.r1_weight=1.0", "--config.gan.r1_every=16"),
            # The same with a tenth of the weight: at gamma 1 D stays near
            # chance (0.53 / 0.47) and G's samples blur.
            "width64_ema_decay_lr4_cond_norm_ac_gsim0_r1_01": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.gan.r1_weight=0.1", "--config.gan.r1_every=16"),
            # width64_ema_decay_lr4_cond_norm_ac_gsim0, the best recipe,
            # at twice the budget (14400 steps, the same schedule
            # stretched), without and with DiffAugment: whether the budget
            # is what keeps the samples from being nameable animals, and
            # whether DiffAugment, which lost at 7200 steps, pays once D
            # has twice as long to memorise the 10k training images.
            "width64_ema_decay_lr4_cond_norm_ac_gsim0_x2": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.train.num_steps=14400"),
            "width64_ema_decay_lr4_cond_norm_ac_gsim0_diffaug_x2": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.train.num_steps=14400", DIFFAUG),
            # The DiffAugment recipe at three times the budget (21600
            # steps): whether FID keeps falling with the budget and whether
            # the samples become nameable animals on the way.
            "width64_ema_decay_lr4_cond_norm_ac_gsim0_diffaug_x3": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.train.num_steps=21600", DIFFAUG),
            # Four times the budget (28800 steps): FID fell by ~6 per
            # extra 7200 steps from x2 to x3 while the samples stayed
            # unnameable; whether the trend holds and what it buys.
            "width64_ema_decay_lr4_cond_norm_ac_gsim0_diffaug_x4": (
                *LR4_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.train.num_steps=28800", DIFFAUG),
            # The DiffAugment recipe with SNGAN's residual G and D at width
            # 32 (model.arch=resnet, 2.4 times the time of a DCGAN width-64
            # step): 9000 steps take about the wall time of x3's 21600, so
            # the pair asks whether capacity buys more than steps.
            "resnet32_ema_decay_lr4_cond_norm_ac_gsim0_diffaug": (
                *RESNET32_COND_NORM_AC, "--config.siamese.g_sim_weight=0.0",
                "--config.train.num_steps=9000", DIFFAUG),
        },
        compare=dict(num=2000),
        classifier=CIFAR_CLASSIFIER),
    "label_cgan": Study(
        # Width 32: a quarter of the compute of the config's 64, so that a
        # run fits the CPU budget of the README's Results.
        config="configs/cgan.py:labels,steps=4000",
        base=(f"--config.data.root={CIFAR}", "--config.model.g_width=32",
              "--config.model.d_width=32", "--config.model.max_width=256"),
        recipes={
            "concat": (),
            "projection": ("--config.model.label_injection=projection",),
            # Half the examples ask for the other class; an image-only
            # classifier's loss on G's outputs (label_following.py).
            "projection_swap": ("--config.model.label_injection=projection",
                                "--config.gan.label_swap=0.5",
                                "--config.gan.aux_classifier=1.0"),
            # The same with five times the classifier's weight, and
            # DiffAugment before D and the classifier (robust class cues).
            "projection_swap_aug": (
                "--config.model.label_injection=projection",
                "--config.gan.label_swap=0.5",
                "--config.gan.aux_classifier=5.0", DIFFAUG),
            # projection_swap with the auxiliary classifier starting from a
            # trained one (another seed than the evaluation classifier).
            "projection_swap_init": (*SWAP_INIT,
                                     "--config.gan.aux_classifier=1.0"),
            # projection_swap_init with five times the classifier's weight.
            "projection_swap_init5": (*SWAP_INIT,
                                      "--config.gan.aux_classifier=5.0"),
            # The same with the pretrained classifier fine-tuned at a tenth
            # of its pace: at 1e-3 on batches of 8 it forgets (its accuracy
            # on the training photos falls from 84% to ~74%).
            "projection_swap_init5_slow": (
                *SWAP_INIT, "--config.gan.aux_classifier=5.0",
                "--config.aux_optim.lr=1e-4"),
        },
        compare=dict(num=2000),
        classifier=CIFAR_CLASSIFIER,
        check_classifier=("configs/classifier.py:steps=3000",
                          f"--config.data.root={CIFAR}",
                          "--config.model.width=16",
                          "--config.model.max_width=128", "--config.seed=2"),
        pretrained={"aux_classifier": ("configs/classifier.py:steps=3000",
                                       f"--config.data.root={CIFAR}",
                                       "--config.seed=1")}),
    "pix2pix": Study(
        # Width 16 at 128 px: 1600 steps of 8 are ~71 epochs of the 180
        # training pairs, within the CPU budget of the README's Results.
        config="configs/cgan.py:cufs,res=128,steps=1600",
        # DiffAugment off unless a recipe asks (cufs turns it on since
        # this study measured it).
        base=("--config.model.g_width=16", "--config.model.d_width=16",
              "--config.model.max_width=128", "--config.gan.diffaug="),
        recipes={
            "baseline": (),
            "diffaug": (DIFFAUG,),
            "multiscale_fm": ("--config.gan.d_scales=2",
                              "--config.gan.feature_matching=10"),
            # The baseline trained 1.5 times as long (107 epochs).
            "baseline_2400": ("--config.train.num_steps=2400",),
            # L1 on early Inception features beside the pixel L1
            # (jaxgen/perceptual.py; needs the FID weights).
            "perceptual": ("--config.gan.perceptual_weight=10",),
            # Lazy R1 on the real pairs (gamma 1, every 16 D updates).
            "r1": ("--config.gan.r1_weight=1.0",),
            # Hinge loss with a spectrally normalised D.
            "hinge_sn": HINGE_SN,
        },
        compare=dict(num=2000)),
    "cyclegan": Study(
        # The config's CPU recipe (64 px, ngf/ndf 32, ResNet-6, batch 1) on
        # CUFS with the stratified split of the pix2pix study: 180 training
        # photos and sketches, pairing ignored, 12 constant + 12 decay
        # epochs (4320 steps, within the budget of the README's Results);
        # the 31 held-out pairs scored per direction.
        config="configs/cyclegan.py:cpu,cufs,epochs=12",
        base=(),
        recipes={
            "baseline": (),
            "diffaug": (DIFFAUG,),
        },
        compare=dict()),
    "signatures": Study(
        # Width 32 at 64 px: 2000 steps of 64 are 500 epochs of the 274
        # training scans (the signers not held out), within the budget.
        config="configs/gan.py:res=64,steps=2000",
        # DiffAugment off unless a recipe asks (the real-data config turns
        # it on since this study measured it).
        base=(f"--config.data.root={SIGNATURES}", "--config.gan.diffaug=",
              "--config.model.g_width=32", "--config.model.d_width=32",
              "--config.model.max_width=256",
              "--config.train.eval_every=500",
              "--config.train.sample_every=500",
              "--config.train.checkpoint_every=500"),
        recipes={
            "baseline": (),
            "diffaug": (DIFFAUG,),
            # EMA weights sampled with BatchNorm statistics of their own
            # (the Siamese study measured the stored averages worse).
            "diffaug_ema": (DIFFAUG, "--config.gan.ema_decay=0.999",
                            "--config.gan.bn_recalibrate=512"),
            # Lazy R1 on the real scans (gamma 1, every 16 D updates, as in
            # the pix2pix study) on top of DiffAugment.
            "diffaug_r1": (DIFFAUG, "--config.gan.r1_weight=1.0"),
            # WGAN-GP as its paper trains it (Gulrajani et al. 2017): the
            # Wasserstein critic loss, gradient penalty 10, five critic
            # updates per G update, Adam 1e-4 with betas (0, 0.9), a
            # critic without BatchNorm (per-example LayerNorm); with
            # DiffAugment, which beat the baseline in this study.
            "diffaug_wgan_gp": (
                DIFFAUG, "--config.gan.loss=wgan", "--config.gan.gp_weight=10",
                "--config.gan.d_steps=5", "--config.model.d_norm=layer",
                *both_optims(lr=1e-4, b1=0.0, b2=0.9)),
            # Hinge loss with a spectrally normalised D without BatchNorm
            # (SNGAN, Miyato et al. 2018), on top of DiffAugment; the
            # config's Adam rates and betas, one D update per G update.
            "diffaug_hinge_sn": (DIFFAUG, *SNGAN_D),
        },
        # 2000 generated scans against the held-out signers' (all of them).
        compare=dict(num=2000)),
}
