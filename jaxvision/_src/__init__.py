"""Private implementation of jaxvision; import the public namespaces instead."""
