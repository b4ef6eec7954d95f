"""Read localization files into particles, write results back.

Every reader returns an awkward array ``n * var * {x, y[, z], particle_id,
<fields>}``: one list of localizations per particle, coordinates in nm, the
particle's id in ``particle_id`` (the same on each of its localizations, so
it follows any slicing and survives Parquet; :func:`particle_ids` gives one
per particle), and per-localization fields under the same names for every
format (``precision``, ``precision_z``, ``photons``, ``frame``, ...).

``read_particles`` picks the reader from the file; the explicit readers are
``read_picasso``, ``read_thunderstorm``, ``read_smap``, ``read_fusion_mat``
(the MATLAB files of the TU Delft fusion tools), ``read_rapidstorm``,
``read_csv_folder``, ``read_csv``, ``read_dataframe`` and ``read_parquet``.

h5py, pyarrow, pandas and PyYAML are optional: ``pip install pcvae-sklearn[io]``.
"""

from ._common import PARTICLE_ID, particle_ids
from ._csv import read_csv, read_csv_folder, read_dataframe, read_thunderstorm
from ._dispatch import FORMATS, read_particles, sniff_format
from ._fusion_mat import read_fusion_mat
from ._parquet import read_parquet, write_parquet
from ._picasso import picasso_pixel_size, read_picasso
from ._rapidstorm import read_rapidstorm
from ._smap import read_smap
from ._stream import iter_parquet_particles, parquet_partitions, transform_parquet
from ._write import results_table, write_picasso, write_results

__all__ = [
    "picasso_pixel_size",
    "FORMATS",
    "PARTICLE_ID",
    "iter_parquet_particles",
    "parquet_partitions",
    "particle_ids",
    "read_csv",
    "read_csv_folder",
    "read_dataframe",
    "read_fusion_mat",
    "read_parquet",
    "read_particles",
    "read_picasso",
    "read_rapidstorm",
    "read_smap",
    "read_thunderstorm",
    "results_table",
    "sniff_format",
    "transform_parquet",
    "write_parquet",
    "write_picasso",
    "write_results",
]
