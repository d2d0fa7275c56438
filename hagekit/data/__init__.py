"""The data layer: one standard section layout (AnnData ``.h5ad``) and readers into it."""
