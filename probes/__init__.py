"""asgan-probe probes: attacks, input gradients, sparsity, saliency, coverage and quality of
GAN discriminators. Primitives import only torch and numpy; plotting and the CLI are edges."""
