"""Models on this computer and on the hub: the Models page (search, downloads, the
local library with each model's decoders), the model catalog the panes pick from, and
the first-run screen that imports the starter model."""
