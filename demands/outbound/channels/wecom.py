"""企业微信 WeCom group robot: POST {"msgtype": "markdown", "markdown": {"content": …}} to the
robot's URL (its key is in the query); the answer is {"errcode": 0, "errmsg": "ok"}."""

from .message import Message, encode, json_error, markdown

HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def request(target: str, secret: str, message: Message, *, now: float) -> tuple[str, bytes, dict]:
    content = markdown(message)
    if message.urgent:
        content = content.replace("### ", '### <font color="warning">!</font> ', 1)
    return target, encode({"msgtype": "markdown", "markdown": {"content": content[:4000]}}), dict(HEADERS)


def check(answer: bytes) -> str | None:
    return json_error(answer, "errcode")
