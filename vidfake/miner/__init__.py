"""The BitMind subnet miner: ``vidfake miner`` serves :class:`vidfake.detector.Detector` on a bittensor axon.

- :mod:`vidfake.miner.protocol`: the wire classes (``ImageSynapse``, ``VideoSynapse``) and the answer vector.
- :mod:`vidfake.miner.guard`: who may ask (registered, validator permit and stake, rate limit).
- :mod:`vidfake.miner.service`: decoding, deadline-aware detection in a worker pool, degradation.
- :mod:`vidfake.miner.server`: the axon, its handlers and ``run(config)``; the flags that build the config
  are in :mod:`vidfake.commands.miner` (``vidfake miner``).
- :mod:`vidfake.miner.client`: a local validator for offline testing, benchmarks and expected reward.

Nothing is imported here: ``import vidfake`` stays fast, bittensor loads only when the miner runs.
"""
