"""Implementation modules of the Tune API (``tune.impl.tuner_internal.TunerInternal``)."""
