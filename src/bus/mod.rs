//! Redis: topology, keys, streams, cache, events (written next).
