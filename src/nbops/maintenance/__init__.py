"""The store's maintenance verbs, over the data of every domain: ``verify`` (checksums),
``repair`` (objects a crash left behind) and ``gc`` (unreferenced objects)."""
