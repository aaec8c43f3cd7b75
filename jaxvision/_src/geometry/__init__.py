"""Private implementation; public names are in `jaxvision.geometry`."""
