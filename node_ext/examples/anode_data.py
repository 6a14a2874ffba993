"""The data of the augmented neural ODE experiments (Dupont, Doucet & Teh, "Augmented Neural
ODEs", NeurIPS 2019, sections 3-5): the two toy problems a neural ODE provably cannot fit, and
the classification sets (iris and the 8x8 digits, from datasets.py).

crossing: 1-D inputs near -1 and near +1 whose targets swap sign, g(-1) = 1 and g(1) = -1. The
flow of an ODE on the real line preserves order (trajectories never cross), so no neural ODE maps
the left cluster above the right one; one extra dimension lets them pass each other.

spheres: points of R^d inside the ball of radius r1 (label -1) and in the shell r2 <= |x| <= r3
(label +1). A linear read-out after a homeomorphism of R^d cannot separate them (the inner ball
stays enclosed by the shell), so a neural ODE can only contort the shell to get close.

Every loader returns (x_train, y_train, x_test, y_test); the toy sets draw from a generator the
caller passes (the runner's run.data_generator), so that a seed fixes the data.
"""
import torch

from . import datasets

CROSSING_CENTRES = (-1.0, 1.0)
SPHERE_RADII = (0.5, 1.0, 1.5)  # r1, r2, r3


def crossing(n, gen, half_width=0.1):
    """n inputs (n, 1), half of them uniform in [-1 - w, -1 + w] and half in [1 - w, 1 + w], with
    targets (n, 1) of -sign(x): the clusters must trade places."""
    side = torch.arange(n) % 2                                   # 0: the left cluster, 1: the right one
    centre = torch.tensor(CROSSING_CENTRES)[side]
    x = centre + half_width * (2.0 * torch.rand(n, generator=gen) - 1.0)
    return x.unsqueeze(1), -centre.unsqueeze(1)


def crossing_split(n_train, n_test, gen, half_width=0.1):
    """Train and test sets of the crossing problem, drawn independently from gen."""
    return (*crossing(n_train, gen, half_width), *crossing(n_test, gen, half_width))


def _in_shell(n, dim, r_lo, r_hi, gen):
    """n points uniform (in volume) in {r_lo <= |x| <= r_hi} of R^dim."""
    direction = torch.randn(n, dim, generator=gen)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    u = torch.rand(n, generator=gen)
    radius = (r_lo ** dim + u * (r_hi ** dim - r_lo ** dim)) ** (1.0 / dim)  # inverse CDF of |x|
    return direction * radius.unsqueeze(1)


def spheres(n, gen, dim=2, radii=SPHERE_RADII):
    """n points of R^dim, half in the ball |x| < r1 (label -1.) and half in the shell r2..r3
    (label +1.), shuffled; labels (n, 1) float."""
    r1, r2, r3 = radii
    if not 0 < r1 < r2 < r3:
        raise ValueError("radii must satisfy 0 < r1 < r2 < r3, got %s" % (radii,))
    n_in = n // 2
    x = torch.cat([_in_shell(n_in, dim, 0.0, r1, gen), _in_shell(n - n_in, dim, r2, r3, gen)])
    y = torch.cat([-torch.ones(n_in, 1), torch.ones(n - n_in, 1)])
    perm = torch.randperm(n, generator=gen)
    return x[perm], y[perm]


def spheres_split(n_train, n_test, gen, dim=2, radii=SPHERE_RADII):
    """Train and test sets of the concentric spheres, drawn independently from gen."""
    return (*spheres(n_train, gen, dim, radii), *spheres(n_test, gen, dim, radii))


def iris():
    """scikit-learn's iris, standardised (4 features, 3 classes); a fixed split."""
    return datasets.iris()


def digits():
    """scikit-learn's 8x8 digits as (N, 1, 8, 8) images in [0, 1] (10 classes); a fixed split."""
    return datasets.digits()


def minibatch(n, size, gen):
    """Indices of one minibatch of `size` drawn without replacement from range(n) (all of it when
    size >= n)."""
    if size >= n:
        return torch.randperm(n, generator=gen)
    return torch.randperm(n, generator=gen)[:size]

