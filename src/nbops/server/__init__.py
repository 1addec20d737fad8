"""``nbops serve``: a registered model over HTTP, with its online features, every prediction logged."""
