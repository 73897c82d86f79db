"""Split returns: a merchant receiver gives money back to the store, either to fund a
refund (planned with the refund) or because the mall backend asks for it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.channel import ChannelError, ChannelSplitReturnRequest, ChannelSplitReturnResult
from gateway.domain_errors import ChannelRefused, ChannelUnavailable, KeyReused, NotFound, Refused
from splitting import repo
from gateway.services.context import Services
from gateway.shapes.profitsharing import return_json
from ledger import repo as ledger_repo
from splitting import funds as order_funds
from splitting import postings

RESULT_STATE = {ChannelSplitReturnResult.SUCCESS: "SUCCESS", ChannelSplitReturnResult.FAILED: "FAILED",
                ChannelSplitReturnResult.PROCESSING: "PROCESSING"}


@dataclass(frozen=True, slots=True)
class ReturnRequest:  # checked at the edge (`gateway.api.requests.refunds.parse_return`)
    sub_mchid: str
    out_order_no: str
    out_return_no: str
    return_mchid: str
    amount_fen: int
    description: str
    request_hash: str


async def request_return(svc: Services, caller, asked: ReturnRequest) -> dict:
    """The mall backend's own split return (WeChat's /v3/profitsharing/return-orders)."""
    mall_id, sub_mchid = caller.mall_id, asked.sub_mchid
    async with svc.pool.acquire() as conn, conn.transaction():
        existing = await repo.split_return(conn, mall_id, sub_mchid, asked.out_return_no)
        if existing is not None:
            if existing["request_hash"] != asked.request_hash:
                raise KeyReused("out_return_no")
            return return_json(existing)
        split = await repo.split_order(conn, mall_id, sub_mchid, asked.out_order_no)
        if split is None or split["kind"] != "split" or split["state"] != "FINISHED":
            raise NotFound("split", message="no finished split with this out_order_no")
        part = next((p for p in split["parts"] if p["type"] == "MERCHANT_ID"
                     and p["account"] == asked.return_mchid), None)
        if part is None:
            raise Refused("not_a_receiver_of_this_split", "return_mchid received nothing from this split")
        await repo.funds_for_update(conn, (mall_id, sub_mchid, split["out_trade_no"]))  # serialise returns
        returned = (await repo.returned_by_split(conn, mall_id, sub_mchid, split["out_trade_no"])).get(
            (split["out_order_no"], part["ledger_account"]), 0)
        if asked.amount_fen > part["amount"] - returned:
            raise Refused("amount_exceeds_returnable", "more than this receiver still holds from the split",
                          returnable=part["amount"] - returned)
        item = await repo.insert_return(
            conn, mall_id=mall_id, sub_mchid=sub_mchid, out_return_no=asked.out_return_no,
            out_order_no=split["out_order_no"], out_trade_no=split["out_trade_no"],
            return_mchid=asked.return_mchid, ledger_account=part["ledger_account"],
            amount_fen=asked.amount_fen, request_hash=asked.request_hash, out_refund_no=None,
            client_id=caller.client_id, created_at=svc.clock())
    try:
        item = await advance(svc, item, asked.description or "分账回退")
    except ChannelError as exc:
        if exc.retryable:
            raise ChannelUnavailable() from None
        raise ChannelRefused("return", exc.code) from None
    return return_json(item)


async def find_return(svc: Services, caller, sub_mchid: str, out_order_no: str | None,
                      out_return_no: str) -> dict | None:
    """A split return as its query answers it, asking the channel while it is in flight;
    None when missing, of another split, or another store's."""
    async with svc.pool.acquire() as conn:
        row = await repo.split_return(conn, caller.mall_id, sub_mchid, out_return_no)
    if row is None or row["out_order_no"] != out_order_no or not caller.sees_store(row["sub_mchid"]):
        return None
    if row["state"] in ("PREPARED", "PROCESSING"):
        row = await advance(svc, row)
    return return_json(row)


async def advance(svc: Services, item, description: str = "退款前分账回退", *, ask_only: bool = False):
    """Ask the channel for (or, with `ask_only` or once requested, about) one return;
    post it when it succeeded. A notification only asks: the request that is perhaps
    still in flight keeps its own fields."""
    key = (item["mall_id"], item["sub_mchid"], item["out_return_no"])
    if item["state"] == "PREPARED" and not ask_only:
        try:
            answer = await svc.channel.request_split_return(ChannelSplitReturnRequest(
                sub_mchid=item["sub_mchid"], out_order_no=item["out_order_no"], order_id=None,
                out_return_no=item["out_return_no"], return_mchid=item["return_mchid"],
                amount_fen=item["amount_fen"], description=description))
        except ChannelError as exc:
            if exc.retryable:
                raise
            async with svc.pool.acquire() as conn:  # refused for good (e.g. past the window)
                row = await repo.mark_return(conn, key, "FAILED", result={"fail_reason": exc.code},
                                             finished_at=svc.clock())
                return row or await repo.split_return(conn, *key)
    else:
        answer = await svc.channel.query_split_return(item["sub_mchid"], item["out_order_no"], item["out_return_no"])
        if answer is None:
            return item  # the channel has not seen the request yet
    state = RESULT_STATE[answer.result]
    async with svc.pool.acquire() as conn, conn.transaction():
        split = await repo.split_order(conn, item["mall_id"], item["sub_mchid"], item["out_order_no"])
        # The split's order_id as the gateway answers it (made when the split was accepted).
        order_id = split["order_id"] if split is not None and split["order_id"] else answer.order_id
        result = {"return_id": answer.return_id, "order_id": order_id, "fail_reason": answer.fail_reason}
        if state == "SUCCESS":  # the order's lock first, as a refund's close takes it
            trade_key = (item["mall_id"], item["sub_mchid"], item["out_trade_no"])
            _, funds = await repo.funds_for_update(conn, trade_key)
        row = await repo.mark_return(conn, key, state, return_id=answer.return_id, result=result,
                                     finished_at=svc.clock() if state != "PROCESSING" else None)
        on_its_own = item["out_refund_no"] is None
        if row is None and state == "SUCCESS":
            # Its refund closed while this request was in flight and took it for never
            # sent (refunds._closed gave the receiver its share back): the channel returned
            # the money all the same, so it is booked as a return of its own.
            row = await repo.revive_return(conn, key, return_id=answer.return_id, result=result,
                                           finished_at=svc.clock())
            on_its_own = row is not None
        if row is not None and state == "SUCCESS":
            if on_its_own:
                await repo.save_funds(conn, trade_key, order_funds.record_return(
                    funds, item["ledger_account"], item["amount_fen"]))
            await ledger_repo.post_transfer(conn, item["mall_id"], postings.return_transfer(
                item["sub_mchid"], item["out_return_no"], item["ledger_account"], item["amount_fen"]), svc.clock())
        return row or await repo.split_return(conn, *key)
