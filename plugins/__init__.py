"""The seven built-in plugins. Each is published under the `faas.plugins` entry-point group."""
