"""asgan-probe probes: attacks, input gradients, sparsity, saliency, coverage and quality of
GAN discriminators, in layers; each imports only the layers above it in this table, and any
layer may import :mod:`asgan_base`, which the trainers stand on too (the primitives only its
L-inf step). The trainers are reached through one module, :mod:`probes.io.edge`, and never
import the probes (``tests/test_layers.py`` enforces all of it):

========  ====================================================================  ==============
layer     what lives there                                                      imports
========  ====================================================================  ==============
core      primitives on tensors: probe modes (frozen / batch / eval), the one   torch, numpy,
          L-inf step and eps conversion (from the base), FGSM/BIM, sweeps,      scipy, skimage
          gradients, sparsity, structure, coverage, quality, stats
io        I/O edges: checkpoints and their facts, data and probe inputs         core, trainers
          (held-out reals, reference groups), foreign and the authors'          (io/edge.py
          discriminators, TorchScript archives read as tensors, JSON output     only)
adapters  other libraries: foolbox, captum, the FID Inception, the digit        core, io
          classifier
measures  one function per measurement a user can ask for (attack, gradients,   core, io,
          saliency, coverage, quality, evolution, fidelity, info), defaults     adapters
          in one place, returning the verb's JSON record (one envelope:
          measures/envelope.py), the same the CLI writes
viz       figures as ``matplotlib.figure.Figure`` objects (the global backend   core, io
          is never touched; palette and atomic saves from the base)
study     ``asgan-study``: plans, runs, arms and metrics (through ``measures``), the       all above
          registered claims, the report
cli       ``asgan-probe``: one module per verb, parse -> load -> call -> write  all above
========  ====================================================================  ==============
"""


def discriminator(module, **kwargs):
    """Any ``torch.nn.Module`` as a probe-ready discriminator: ``(D, meta)``, which every
    measure (``probes.measures.attack.attack``, ``gradients``, ``saliency``) takes in place
    of a file path. Keywords: ``shape`` (required), ``pixel_range``, ``reduction``, ``label``,
    ``label_as``, ``num_classes``, ``seed``, ``group_size``, ``name``
    (:func:`probes.measures.contract.discriminator`)."""
    from probes.measures.contract import discriminator as _discriminator

    return _discriminator(module, **kwargs)
