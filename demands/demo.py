"""Realistic demo demands: user feedback, log exceptions, API anomalies and feature requests."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timezone

SOURCES = {
    "user_feedback": ["web_app", "ios_app", "android_app", "mini_program"],
    "log_exception": ["order-service", "payment-service", "auth-service", "log-scanner"],
    "api_anomaly": ["api-gateway", "partner-api", "billing-api"],
    "feature_request": ["web_app", "customer_portal", "crm"],
}

CONTENT = {
    "user_feedback": [
        "页面加载太慢,请优化。",
        "支付完成后订单状态一直显示“待支付”。",
        "搜索结果和关键词不相关,找不到想要的商品。",
        "手机端字体太小,老人看不清。",
        "The checkout button does nothing on Safari 17.",
        "Dark mode makes the order table unreadable.",
        "收到的验证码短信延迟了五分钟。",
        "I was charged twice for the same subscription.",
    ],
    "log_exception": [
        "java.lang.NullPointerException at OrderController.submit(OrderController.java:142)",
        "TimeoutError: upstream payment gateway did not answer within 5000 ms",
        "psycopg.OperationalError: connection to server at 10.0.3.7 failed: too many clients",
        "Redis 连接池耗尽:acquire timeout after 2000ms",
        "KeyError: 'user_id' in auth/session.py line 88",
        "OutOfMemoryError: Java heap space in ReportExportJob",
    ],
    "api_anomaly": [
        "/api/v2/orders 的 p99 延迟升至 3.2 秒(基线 400 毫秒)",
        "5xx rate on POST /api/payments reached 7% over 5 minutes",
        "合作方接口返回字段 amount 类型由数字变为字符串",
        "GET /api/products called 12,000 times/min by one API key (quota 1,000)",
        "Webhook deliveries to partner endpoint failing with 401 since 10:05",
    ],
    "feature_request": [
        "希望支持按部门导出报表为 Excel。",
        "Please add SSO login with our corporate identity provider.",
        "能否增加批量修改订单地址的功能?",
        "Allow customers to schedule deliveries for a specific time window.",
        "希望消息通知可以推送到企业微信。",
    ],
}

TAGS = ["mobile", "checkout", "performance", "billing", "ux", "security", "报表", "通知"]
PRIORITY_BY_TYPE = {"log_exception": ["high", "urgent", None], "api_anomaly": ["high", None], "user_feedback": [None, None, "low"], "feature_request": ["low", None]}


def demo_demand(rng: random.Random | None = None) -> dict:
    """One demand in the reference format, sometimes with the optional priority and tags."""
    rng = rng or random
    type_ = rng.choices(list(CONTENT), weights=[5, 3, 2, 1])[0]
    demand = {
        "id": uuid.uuid4().hex[:12],
        "type": type_,
        "content": rng.choice(CONTENT[type_]),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "source": rng.choice(SOURCES[type_]),
    }
    priority = rng.choice(PRIORITY_BY_TYPE[type_])
    if priority:
        demand["priority"] = priority
    if rng.random() < 0.3:
        demand["tags"] = rng.sample(TAGS, k=rng.randint(1, 2))
    return demand
