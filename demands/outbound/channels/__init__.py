"""One small module per platform: each turns a rendered `Message` into the platform's own request
(`request(target, secret, message, now=…) -> (url, body, headers)`) and reads its answer
(`check(answer) -> error text or None`: chat robots answer HTTP 200 with an error code inside).
E-mail goes through Django's mail instead (`email.send`).

Written by hand rather than through Apprise: Apprise sends with its own HTTP client, which would
bypass the one SSRF-checked POST (monitoring.webhooks.post: checked address, no redirects, no
proxies, one deadline) that alert webhooks use, and these formats are a few lines each.
"""

from . import dingtalk, feishu, slack, webhook, wecom

HTTP_CHANNELS = {"wecom": wecom, "dingtalk": dingtalk, "feishu": feishu, "slack": slack, "webhook": webhook}
