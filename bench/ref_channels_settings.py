"""Settings for reference 3: Choir's settings, with the stock RedisChannelLayer.

The channel layer is channels-redis' core layer as the Channels tutorial sets
it up (defaults: capacity 100, expiry 60), on the benchmark's Redis.
"""

import os

from choirsite.settings import *  # noqa: F403

ROOT_URLCONF = "choirsite.urls"
ASGI_APPLICATION = "bench.ref_channels.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ["BENCH_REDIS_URL"]]},
    }
}
