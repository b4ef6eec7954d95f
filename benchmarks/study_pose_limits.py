"""Is a fusion's pose error the search's or the data's? Fuse, then start every particle at its true pose.

Fuses a data set with ``ParticleFuser`` defaults, then registers every
particle onto the fused model (centres and variances fixed) twice: from the
pose the fuser gave it, and from its true pose carried into the fused frame.
It prints:

* the fraction within 5 degrees, fused and from the truth. If the second is
  far above the first, the model holds the right poses and the search missed
  them; if not, the data do not pin the poses down (precision, labelling);
* how many of the wrong poses are likelier at the truth, and how far off
  the wrong ones are.

Data: simulated TU Delft logos at 30 % labelling (``bench_logo_fusion.py``),
or 200 3D pores of 8 nm lateral error under full rotations with the
precision fields dropped (``bench_fusion.py --no-precision-only``).

    python benchmarks/study_pose_limits.py --data logos --seed 0
    python benchmarks/study_pose_limits.py --data pores3d --axial 20 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fusion import _angle, dihedral_3d, errors_2d, errors_3d  # noqa: E402
from bench_logo_fusion import rotations as logo_rotations  # noqa: E402
from bench_logo_fusion import simulate as simulate_logos  # noqa: E402

from pcvae_sklearn import as_particles  # noqa: E402
from pcvae_sklearn.datasets import make_npc_3d  # noqa: E402
from pcvae_sklearn.fuse import ParticleFuser  # noqa: E402
from pcvae_sklearn.fuse._em import EMState, _register_each  # noqa: E402
from pcvae_sklearn.fuse._frames import _em_variances, _loc_variance  # noqa: E402
from pcvae_sklearn.fuse._steps import _excess_variances  # noqa: E402


def common_frame(rotations, truth, good, symmetry):
    """The global rotation G with rotations[i] @ truth[i] ~ G S_i over the ``good`` particles (chordal mean)."""
    comb = rotations @ truth
    cand = np.einsum("nab,scb->nsac", comb, symmetry)
    ref = np.flatnonzero(good)[0]
    pick = _angle(np.einsum("ba,nsbc->nsac", comb[ref], cand)).argmin(1)
    u, _, vt = np.linalg.svd(cand[np.arange(len(comb)), pick][good].sum(0))
    u[:, -1] *= np.sign(np.linalg.det(u @ vt))
    return u @ vt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=["logos", "pores3d"], default="logos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--axial", type=float, default=20.0, help="pores3d: axial error (nm)")
    args = ap.parse_args(argv)
    if args.data == "logos":
        particles, angles, shifts = simulate_logos(256, 0.3, args.seed)
        X = [xy for xy, _ in particles]
        truth, offset = logo_rotations(angles), shifts
        symmetry, errors = np.eye(2)[None], (lambda r: errors_2d(r, truth, fold=1))
    else:
        with_fields, sim = make_npc_3d(200, radius=50.0, height=50.0, rotation="3d", precision=8.0,
                                       z_ratio=args.axial / 8.0, random_state=args.seed)
        X = with_fields[[k for k in with_fields.fields if not k.startswith("precision")]]
        truth, offset = sim["rotation"], sim["offset"]
        symmetry, errors = dihedral_3d(), (lambda r: errors_3d(r, truth, dihedral_3d()))
    t0 = time.perf_counter()
    fuser = ParticleFuser(random_state=args.seed).fit(X)
    print(f"{args.data}, seed {args.seed}: fit {time.perf_counter() - t0:.1f} s")
    err = errors(fuser.rotations_)
    wrong = err >= 5
    p = as_particles(X)
    centroids = p.centroids()
    src = p.coords - np.repeat(centroids, p.lengths, axis=0)
    # the fuser's transforms act on src (centred particles) as src @ R.T + t
    fused_t = fuser.translations_ + np.einsum("nab,nb->na", fuser.rotations_, centroids)
    frame = common_frame(fuser.rotations_, truth, ~wrong, symmetry)
    true_r = np.einsum("ab,nbc->nac", frame, np.transpose(truth, (0, 2, 1)))
    lever = np.einsum("nab,nb->na", true_r, centroids - offset)
    true_t = lever + np.median(fused_t[~wrong] - lever[~wrong], axis=0)
    mode = "2d" if p.n_dims == 2 else "3d"
    loc_var, own_var = _loc_variance(p, True, mode)
    variances = _em_variances(loc_var, own_var, mode, p.offsets)
    if fuser.axial_excess_ > 0:
        _, variances = _excess_variances(fuser.axial_excess_, p.n_localizations, p.offsets, mode)
    ends = []
    for rot, trans in ((fuser.rotations_, fused_t), (true_r, true_t)):
        start = EMState(rot.copy(), trans.copy(), fuser.centres_, fuser.sigma2_)
        ends.append(_register_each(src, p.offsets, start, fuser._mixture_, variances, max_iter=200, tol=1e-7))
    from_truth = errors(ends[1].rotations)
    ll = [e.particle_ll / p.lengths for e in ends]
    likelier = ll[1][wrong] > ll[0][wrong] + 1e-6
    print(f"within 5 degrees: fused {np.mean(~wrong):.1%}, registered onto the fused model from the truth "
          f"{np.mean(from_truth < 5):.1%}")
    print(f"wrong poses: {wrong.sum()}; likelier at the truth: {likelier.sum()}; their errors (degrees): "
          f"median {np.median(err[wrong]):.1f}, {np.mean(err[wrong] < 20):.0%} below 20")


if __name__ == "__main__":
    main()
