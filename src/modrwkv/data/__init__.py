"""Data for ModRWKV: offline generators, webdataset shards, converters from public formats.

Kept light on purpose: importing ``modrwkv.data`` loads no heavy dependency (PIL, webdataset, statsmodels).
Import the submodules directly, e.g. ``from modrwkv.data.shards import write_shards``.

Main entry points (see each module's docstring):

- ``modrwkv.data.prepare.prepare_offline_dataset`` / ``load_prepared``: generate + write train/val/test shards
  once, reuse after.
- ``modrwkv.data.reader.make_dataset``: read shards back into the sample schema.
- ``modrwkv.data.skips.SkipCounter`` / ``TooManySkipsError``: corrupt samples skipped, counted, limited.
- ``modrwkv.data.shards.write_shards``: write any iterable of samples to shards.
- ``modrwkv.data.shapes_vqa``, ``spoken_words``, ``forecasting``: the generators.
- ``modrwkv.data.forecast_format``: ``format_forecast`` / ``parse_forecast``.
- ``modrwkv.data.convert_llava``, ``convert_librispeech``, ``convert_ett``: converters (each also a CLI).
- ``modrwkv.data.codecs``: how each kind of data is checked, stored in a record and read back.

The modalities themselves (names, tags, codecs, generators) are registered in ``modrwkv.modalities``.
"""
