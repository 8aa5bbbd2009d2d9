"""POST/GET /accounts, GET/DELETE /accounts/{email}, GET /accounts/usage ."""

from __future__ import annotations

import hashlib

from ._context import Ctx
from ._params import INT, STR, Field, body_fields, query_fields, validate
from ._records import account_record, usage_record
from ._state import MAX_ACCOUNTS, SimAccount
from ._wire import Response, bad_request

_MAX_JOBS = Field(INT, lo=1, hi=16)
_ADD = {"refresh_token": Field(STR, required=True), "maxJobs": _MAX_JOBS}
_LIMIT = {"email": Field(STR, required=True), "maxJobs": Field(INT, required=True, lo=1, hi=16)}
_NEW_ACCOUNT_CREDITS = 1000.0


async def post_accounts(ctx: Ctx) -> Response:
    raw = body_fields(ctx.req)
    if "refresh_token" not in raw and "email" in raw:
        return _set_max_jobs(ctx, validate(raw, _LIMIT))
    body = validate(raw, _ADD)
    token: str = body["refresh_token"]
    # docs/api-notes.md#q17-refresh-token-length: fewer than 10 characters is refused.
    if len(token) < 10 or any(ch.isspace() for ch in token):
        raise bad_request("Parameter refresh_token is invalid")
    world = ctx.world
    email = _email_for(ctx, token)
    acct = world.accounts.get(email)
    if acct is not None:
        acct.refresh_token = token
        world.refresh_emails[token] = email
        acct.refreshed_at = world.clock.now()
        acct.refreshed_count += 1
        acct.error = None  # a fresh refresh token heals an account in error state
        if "maxJobs" in body:
            acct.max_jobs = body["maxJobs"]
        return Response.json(200, account_record(acct))
    if len(world.accounts) >= MAX_ACCOUNTS:
        # docs/api-notes.md#q18-unknown-account-add: a 51st account -> 400.
        raise bad_request(f"At most {MAX_ACCOUNTS} accounts can be configured")
    acct = world.add_account(
        SimAccount(
            email=email,
            max_jobs=body.get("maxJobs", 4),
            credits=_NEW_ACCOUNT_CREDITS,
            tier="unknown",
            refresh_token=token,
        )
    )
    return Response.json(201, account_record(acct))


def _set_max_jobs(ctx: Ctx, body: dict[str, object]) -> Response:
    # Mode B: maxJobs only, no refresh. docs/api-notes.md#q18-unknown-account-add: unknown email ->
    # 404.
    acct = ctx.world.account(str(body["email"]))
    acct.max_jobs = int(str(body["maxJobs"]))
    return Response.json(200, account_record(acct))


def _email_for(ctx: Ctx, token: str) -> str:
    """The account a refresh token belongs to: a configured one, else a stable derived email."""
    known = ctx.world.refresh_emails.get(token)
    if known is not None:
        return known
    return f"sim-{hashlib.sha256(token.encode()).hexdigest()[:10]}@example.com"


async def get_accounts(ctx: Ctx) -> Response:
    validate(query_fields(ctx.req), {})
    return Response.json(200, {e: account_record(a) for e, a in ctx.world.accounts.items()})


async def get_account(ctx: Ctx) -> Response:
    validate(query_fields(ctx.req), {})
    acct = ctx.world.account(ctx.params["email"])
    return Response.json(200, account_record(acct, balances=True))


async def delete_account(ctx: Ctx) -> Response:
    validate(query_fields(ctx.req), {})
    acct = ctx.world.account(ctx.params["email"])
    # docs/api-notes.md#q23-deleted-account: running jobs keep their records; the account's clips
    # stop working.
    del ctx.world.accounts[acct.email]
    return Response(204)


async def get_usage(ctx: Ctx) -> Response:
    query = validate(query_fields(ctx.req), {"email": Field(STR, required=True)})
    return Response.json(200, usage_record(ctx.world.account(query["email"])))
