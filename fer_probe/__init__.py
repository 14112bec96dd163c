"""fer_probe: train and evaluate probes on cached V-JEPA tokens; never decodes video or runs the encoder."""

__version__ = "0.1.0"
