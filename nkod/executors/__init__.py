"""Where a video's job runs: `local` (a child process of the daemon) or `dask` (a remote cluster).

Only `base` and `local` are imported by default; the Dask executor imports `distributed` and is loaded
only when the config asks for it."""
