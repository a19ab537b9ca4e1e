"""Notifications where people already are: e-mail, WeCom, DingTalk, Feishu/Lark, Slack and signed
webhooks, fed by every saved notification (demands.notifications.save) through an outbox."""
