"""asgan-probe probes: attacks, input gradients, sparsity, saliency, coverage and quality of
GAN discriminators, in layers; each imports only the layers above it in this table
(``tests/test_layers.py`` enforces it):

========  ====================================================================  ==============
layer     what lives there                                                      imports
========  ====================================================================  ==============
core      primitives on tensors: probe modes (frozen / batch / eval), the one   torch, numpy,
          L-inf step and eps conversion, FGSM/BIM, sweeps, gradients,           scipy, skimage
          sparsity, structure, coverage, quality, stats
io        I/O edges: checkpoints and their facts, data and probe inputs         core, trainers
          (held-out reals, reference groups), foreign and the authors'
          discriminators, TorchScript archives read as tensors, JSON output
adapters  other libraries: foolbox, captum, the FID Inception, the digit        core, io
          classifier
measures  one function per measurement a user can ask for (attack, gradients,   core, io,
          saliency, coverage, quality, evolution), defaults in one place,       adapters
          returning the JSON-able record
viz       figures as ``matplotlib.figure.Figure`` objects (the global backend   core, io
          is never touched), one palette, atomic saves
study     the shipped study: arms and metrics (through ``measures``), the       all above
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
