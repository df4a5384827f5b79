"""The pen-move templates of jaxgen/data/synth_signatures.py.

Letter-like groups of pen moves. Each move "dx dy turn [T]" is one
submovement displacing the pen by (dx, dy) x-heights along an arc that turns
by `turn` degrees (positive = counter-clockwise, y up); T marks moves whose
dy scales with the writer's ascender height (designed at NEUTRAL_ASCENDER).
Letters start and end on the baseline; connectors join them.
"""


def moves(spec):
  """Parses a template.

  Args:
    spec: 'dx dy turn [T] | ...', one move per '|'.

  Returns:
    ((dx, dy, turn, tall), ...), tall True where T is given.
  """
  return tuple((float(m[0]), float(m[1]), float(m[2]), len(m) > 3)
               for m in (move.split() for move in spec.split('|')))


NEUTRAL_ASCENDER = 2.2
LOWER = {k: moves(v) for k, v in {
    'e': '.45 .85 20 | -.25 0 170 | -.05 -.85 15',
    'l': '.45 1.9 15 T | -.3 0 170 | -.05 -1.9 10 T',
    'i': '.3 .8 10 | 0 -.8 -5',
    't': '.35 1.7 5 T | -.05 -1.7 -5 T',
    'u': '.3 .8 10 | 0 -.8 0 | .3 0 160 | .05 .8 0 | 0 -.8 0',
    'n': '.3 .8 10 | 0 -.8 0 | .05 .7 -10 | .35 0 -160 | 0 -.7 0',
    'm': ('.3 .8 10 | 0 -.8 0 | .05 .7 -10 | .3 0 -160 | 0 -.7 0 |'
          '0 .65 -10 | .3 0 -160 | 0 -.65 0'),
    'a': '.55 .8 -40 | -.35 0 100 | -.05 -.75 60 | .35 -.05 100 | 0 .8 40 |'
         '0 -.8 0',
    'o': '.55 .8 -40 | -.35 0 100 | -.05 -.75 60 | .35 -.05 100 |'
         '.05 .8 60 | .3 -.1 -60 | .1 -.7 20',
    'y': '.3 .8 10 | 0 -.8 0 | 0 -1.1 0 T | -.35 0 -170 | .75 1.1 -15 T',
    'h': '.45 1.9 15 T | -.3 0 170 | -.05 -1.9 10 T | .05 .7 -10 |'
         '.35 0 -160 | 0 -.7 0',
}.items()}
LOWER_WEIGHTS = {'e': 3, 'l': 2, 'i': 2, 't': 1, 'u': 2, 'n': 2, 'm': 1,
                  'a': 2, 'o': 1, 'y': 1, 'h': 1}
# Capitals, 2.2 x-heights tall, scaled per writer: a wide tall loop (L,
# looped stems); an oval entered at the top, then a downstroke (O, C, G); a
# stem, a turn and a bowl (D, B, P); two arches (M, N, H).
CAPITALS = tuple(moves(v) for v in (
    '.5 2.2 20 | -.5 0 170 | -.2 -2.2 15 | .6 .1 110',
    '-.9 -1.1 90 | .9 -1.1 90 | .9 1.1 90 | -.9 1.1 90 | -.3 -.1 60 |'
    '.9 -2 30',
    '0 -2.2 0 | -.2 .1 -150 | .1 2.1 0 | 1 -.3 -100 | -.2 -1.6 -80 |'
    '-1 -.2 -60 | 1.2 .1 140',
    '.3 2.2 5 | 0 -2.2 0 | .05 1.9 -10 | .7 0 -160 | 0 -1.9 0 |'
    '0 1.7 -10 | .7 0 -160 | 0 -1.7 0',
))
WAVE = moves('.3 .5 -50 | .3 -.5 -50')  # An illegible arcade tail.
