"""Secret samples for the scrubber's tests, made at test time in the shapes secret scanners publish
(gitleaks' default rules, detect-secrets' plugins, the providers' own documentation): our own random
strings, never real credentials.  Each family has a positive sample, the part of it that must never
arrive, and a look-alike that must arrive unchanged."""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable
from typing import NamedTuple

ALNUM = string.ascii_letters + string.digits
UPPER32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
HEX = "0123456789abcdef"
B64URL = ALNUM + "-_"
B64 = ALNUM + "+/"


class Sample(NamedTuple):
    rule: str
    text: str  # what is logged
    secret: str  # the part that must never arrive
    kept: str  # a part that must arrive (context the rule keeps); "" when none


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def luhn_card(rng: random.Random, first: str = "4", length: int = 16) -> str:
    digits = [int(c) for c in first] + [rng.randrange(10) for _ in range(length - len(first) - 1)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:  # doubled: the check digit is appended after these
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def _pem(rng: random.Random, kind: str) -> str:
    label = f"{kind} PRIVATE KEY" if kind != "PGP" else "PGP PRIVATE KEY BLOCK"
    label = label.strip()
    body = "\n".join(_rand(rng, B64, 64) for _ in range(4))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----", body.split("\n")[1]


def positives(seed: int = 21) -> list[Sample]:
    """One sample of every family (several for some), in a fresh random shape each seed."""
    rng = random.Random(seed)
    r = lambda alphabet, n: _rand(rng, alphabet, n)  # noqa: E731
    out: list[Sample] = []

    def token(rule: str, value: str) -> None:
        out.append(Sample(rule, value, value, ""))

    token("aws_access_key_id", "AKIA" + r(UPPER32, 16))
    token("aws_access_key_id", "ASIA" + r(UPPER32, 16))
    for prefix in ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"):
        token("github_token", prefix + r(ALNUM, 36))
    token("github_token", "github_pat_" + r(ALNUM, 22) + "_" + r(ALNUM, 59))
    token("gitlab_token", "glpat-" + r(B64URL, 20))
    token("slack_token", f"xoxb-{r(string.digits, 12)}-{r(string.digits, 13)}-{r(ALNUM, 24)}")
    token(
        "slack_token",
        f"xoxp-{r(string.digits, 12)}-{r(string.digits, 12)}-{r(string.digits, 13)}-{r(HEX, 32)}",
    )
    path = f"T{r(UPPER32, 8)}/B{r(UPPER32, 10)}/{r(ALNUM, 24)}"
    out.append(
        Sample("slack_webhook", f"https://hooks.slack.com/services/{path}", path, "hooks.slack.com/services/")
    )
    token("stripe_key", "sk_live_" + r(ALNUM, 24))
    token("stripe_key", "rk_live_" + r(ALNUM, 24))
    token("google_api_key", "AIza" + r(B64URL, 35))
    token("sendgrid_key", f"SG.{r(B64URL, 22)}.{r(B64URL, 43)}")
    token("openai_key", "sk-proj-" + r(B64URL, 74) + "T3BlbkFJ" + r(B64URL, 74))
    token("openai_key", "sk-" + r(ALNUM, 20) + "T3BlbkFJ" + r(ALNUM, 20))
    token("anthropic_key", "sk-ant-api03-" + r(B64URL, 93) + "AA")
    token("npm_token", "npm_" + r(ALNUM, 36))
    token("pypi_token", "pypi-AgEIcHlwaS5vcmc" + r(B64URL, 70))
    token("twilio_key", "SK" + r(HEX, 32))
    token("mailgun_key", "key-" + r(HEX, 32))
    token("shopify_token", "shpat_" + r(HEX, 32))
    token("shopify_token", "shpss_" + r(HEX, 32))
    token("huggingface_token", "hf_" + r(string.ascii_letters, 34))
    token("digitalocean_token", "dop_v1_" + r(HEX, 64))
    token("hashicorp_vault_token", "hvs." + r(B64URL, 90))
    token("sentry_token", "sntrys_" + r(B64, 60))
    token("jwt", f"eyJ{r(B64URL, 20)}.eyJ{r(B64URL, 30)}.{r(B64URL, 43)}")
    cred = r(ALNUM + "._-", 32)
    out.append(Sample("bearer", f"Authorization: Bearer {cred}", cred, "Authorization: Bearer "))
    basic = base64.b64encode(f"svc:{r(ALNUM, 16)}".encode()).decode()
    out.append(Sample("basic_auth", f"Authorization: Basic {basic}", basic, "Basic "))
    card = luhn_card(rng)
    token("credit_card", card)
    token("credit_card", " ".join(card[i : i + 4] for i in range(0, 16, 4)))
    for kind in ("", "RSA", "EC", "OPENSSH", "ENCRYPTED", "PGP"):
        block, line = _pem(rng, kind)
        out.append(Sample("private_key", block, line, ""))
    pw = r(ALNUM, 16)
    out.append(Sample("url_password", f"postgres://app:{pw}@db.internal:5432/orders", pw, "postgres://app:"))
    pw = r(ALNUM, 12) + "@" + r(ALNUM, 4)  # an unescaped "@" inside the password
    out.append(Sample("url_password", f"redis://:{pw}@cache:6379/0", pw, "@cache:6379/0"))
    pw = r(ALNUM, 14)
    out.append(Sample("url_password", f"https://deploy:{pw}@git.example.com/repo.git", pw, "https://deploy:"))
    for template in (
        "password={}",
        "?user=ann&access_token={}&page=2",
        'AWS_SECRET_ACCESS_KEY="{}"',
        '{{"api_key": "{}", "user": "ann"}}',
        "{{'client_secret': '{}'}}",
        "db:\n  password: {}\n  host: db",
        "the config had secret: {} in it",
        'payload={{\\"token\\": \\"{}\\"}}',
        "X-Api-Key: {}",
        "export DB_PASSWORD={}",
        "AccountName=acct;AccountKey={};EndpointSuffix=core.windows.net",
    ):
        value = r(ALNUM, 18)
        text = template.format(value)
        out.append(Sample("secret_assignment", text, value, text[: text.index(value)]))
    return out


def look_alikes(seed: int = 22) -> list[tuple[str, str]]:
    """(family, text): close to a secret's shape, not one; each must arrive unchanged."""
    rng = random.Random(seed)
    r: Callable[[str, int], str] = lambda alphabet, n: _rand(rng, alphabet, n)  # noqa: E731
    card = luhn_card(rng)
    bad_card = card[:-1] + str((int(card[-1]) + 1) % 10)
    return [
        ("aws_access_key_id", "AKIA" + r(UPPER32, 10)),
        ("github_token", "ghp_" + r(ALNUM, 12)),
        ("gitlab_token", "glpat-short"),
        ("slack_token", "the xoxb- prefix"),
        ("slack_webhook", "see https://hooks.slack.com/ for help"),
        ("stripe_key", "sk_live_abc"),
        ("google_api_key", "AIza" + r(ALNUM, 12)),
        ("sendgrid_key", "SG.short.value"),
        ("openai_key", "order sk-1042 shipped"),
        ("anthropic_key", "sk-ant-docs"),
        ("npm_token", "npm_config_cache=/tmp/npm"),
        ("pypi_token", "pypi-AgE short"),
        ("twilio_key", "SK" + r(HEX, 20)),
        ("mailgun_key", "cache key-" + r(HEX, 16)),
        ("shopify_token", "shpat_" + r(HEX, 10)),
        ("huggingface_token", "hf_model loaded"),
        ("digitalocean_token", "dop_v1_abc"),
        ("hashicorp_vault_token", "hvs.short"),
        ("sentry_token", "sntrys_x"),
        ("jwt", "eyJ" + r(B64URL, 10)),
        ("bearer", "missing bearer token"),
        ("basic_auth", "Basic settings saved"),
        ("credit_card", bad_card),
        ("private_key", "-----BEGIN PUBLIC KEY-----\n" + r(B64, 64) + "\n-----END PUBLIC KEY-----"),
        ("private_key", "-----BEGIN CERTIFICATE-----\n" + r(B64, 64) + "\n-----END CERTIFICATE-----"),
        ("url_password", "ssh://git@github.com/org/repo.git"),
        ("url_password", "https://example.com:8443/path?user=ann@example.com"),
        ("secret_assignment", "Password reset requested for user 42"),
        ("secret_assignment", "tokens_used: 512, author: ann"),
        ("secret_assignment", "SELECT * FROM users WHERE token = %s AND password = ?"),
        ("secret_assignment", "UPDATE t SET api_key = $1, secret = :secret WHERE id = {id}"),
        ("bearer", "grant=bearer expires_in=3600"),
    ]


def corpus(seed: int = 23) -> list[str]:
    """What logs are full of, none of it a secret: arrives unchanged."""
    rng = random.Random(seed)
    image = base64.b64encode(bytes(rng.randrange(256) for _ in range(600))).decode()
    return [
        "request 7f9c2ba4-e88f-4b2c-9a3d-2f1e0c6b8d71 finished in 12 ms",
        "deployed commit 3f786850e387550fdab836ed7e6dc881de23001b to production",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "cloned ssh://git@github.com/highlight/highlight.git",
        "fetching https://api.example.com/v1/users?page=2&limit=50",
        "GET http://localhost:8080/health 200",
        "mail sent to ada.lovelace@example.com",
        f"data:image/png;base64,{image}",
        "2026-12-07T12:49:41.123456Z started",
        "epoch 1712345678901 ns 1712345678901234567",
        "client 192.168.10.24 connected from 2001:db8::ff00:42:8329",
        "order sk-1042 shipped",
        "password",
        "Password reset requested",
        "invalid password for user 42",
        "user 42 did login",
        "basic auth failed",
        "the bearer of bad news",
        "tokens_used=512 author=ann",
        "sessions: 4 active",
        "public key fingerprint SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
        "-----BEGIN CERTIFICATE-----",
        "risk 0123456789abcdef0123456789abcdef noted",
        "user_id=42&page=3",
        "ghp_ prefix is documented",
    ]
