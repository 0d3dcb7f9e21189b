"""The password limits are the cluster's, not each instance's.

``password_failures_per_account`` (5 here) failed attempts spread over A, B and C, through
the token endpoint and the login page's form, reach the limit at 5 in total: the next
attempt is refused with 429 on any instance, even with the right password. Fired all at
once (five per instance), exactly 5 attempts are judged and every other one is refused.
"""

from __future__ import annotations

import secrets
from functools import partial

import httpx

from .flows import Authorization, Forms, password_grant
from .harness import Browser, Cluster, at_once
from .support import ISSUER_OPTIONS, RATE_LIMITED_PASSWORD, RATE_LIMITED_USER

LIMIT = ISSUER_OPTIONS["password_failures_per_account"]
NAMES = ("A", "B", "C")


def _form_attempt(browser: Browser, fields: dict[str, str], password: str, on: str | None) -> int:
    answer = browser.post(
        "/oauth/authorize",
        on=on,
        data={**fields, "username": RATE_LIMITED_USER, "password": password},
    )
    return answer.status_code


def test_failures_spread_over_instances_and_entrances_reach_the_limit_once(
    cluster: Cluster, browser: Browser
) -> None:
    auth = Authorization.new()
    page = browser.get(auth.path, on="A")
    fields = next(fields for _, fields in Forms(page.text).forms if "password" in fields)
    statuses = []
    served = len(browser.served_by)
    for attempt in range(LIMIT):  # round-robin over A, B and C
        if attempt % 2:  # the login page's form (a 400 page with the form again)
            statuses.append(_form_attempt(browser, fields, "wrong", None))
        else:  # the token endpoint's password grant
            answer = password_grant(browser, on=None, username=RATE_LIMITED_USER, password="wrong")
            assert answer.json()["error"] == "invalid_grant"
            statuses.append(answer.status_code)
    assert statuses == [400] * LIMIT
    assert browser.served_by[served:] == ["A", "B", "C", "A", "B"]

    # The limit is reached: the right password is refused too, on every instance and form.
    retry_after = set()
    for name in NAMES:
        answer = password_grant(
            browser, on=name, username=RATE_LIMITED_USER, password=RATE_LIMITED_PASSWORD
        )
        assert (answer.status_code, answer.json()["error"]) == (429, "slow_down"), name
        retry_after.add(int(answer.headers["retry-after"]))
        assert _form_attempt(browser, fields, RATE_LIMITED_PASSWORD, name) == 429
    # One window for the cluster: every instance names the same end (within a second).
    assert max(retry_after) - min(retry_after) <= 1
    assert 0 < min(retry_after) <= ISSUER_OPTIONS["password_window"]


def test_attempts_fired_at_once_on_every_instance_are_judged_limit_times_in_all(
    cluster: Cluster,
) -> None:
    username = f"nobody-{secrets.token_hex(4)}"  # unknown names are limited alike
    lanes = [(Browser(cluster, [name]), name) for name in NAMES for _ in range(LIMIT)]
    try:
        for lane, name in lanes:
            assert lane.get("/healthz", on=name).status_code == 200
        timed = at_once(
            [
                partial(password_grant, lane, on=name, username=username, password="wrong")
                for lane, name in lanes
            ]
        )
    finally:
        for lane, _ in lanes:
            lane.close()
    answers = [t.result for t in timed]
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    counted = sorted(a.status_code for a in answers)
    assert counted == [400] * LIMIT + [429] * (len(lanes) - LIMIT)
    judged_on = {name for (_, name), a in zip(lanes, answers, strict=True) if a.status_code == 400}
    print(f"rate limit burst: {len(lanes)} at once, 400 on {sorted(judged_on)}, rest 429")
