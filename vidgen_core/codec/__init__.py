"""Learned video compression with a real bitstream (``vidgen compress`` / ``decompress``).

    bitstream.py  the .vgc format: versioned header, length-prefixed records
    prior.py      the probability model (fitted on train latents, stored as codec.json)
    context.py    predictions and context buckets from decoded latent frames
    entropy.py    range coding of quantised latents with constriction
    model.py      the VAE as a codec: windows, padding, identity
    stream.py     frames <-> .vgc bytes, one window at a time
    files.py      video file <-> .vgc file (PyAV, temporary names, progress bar)
    x264.py       the libx264 anchor, measured the same way
    rd.py         rate-distortion curves, BD-rate, plot (the codec_eval step)
"""
