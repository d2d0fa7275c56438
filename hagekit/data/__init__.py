"""The data layer: one standard section layout (AnnData ``.h5ad``) and readers into it.

Images are read through :mod:`hagekit.slides` (the one image layer), never here."""
