"""The structure of a chat: the order of its turns."""

from __future__ import annotations

import polars as pl

from curate.clean.base import Rule


class TurnOrder(Rule):
    """Chat templates that insist on user/assistant alternation (Llama 2's, Mistral's) raise on
    such a chat at training time, and a last user turn has no answer to learn. Flagged by default:
    ShareGPT dumps hold such chats by the thousand, and whether to drop them depends on the
    template; ``--rule turn_order=drop`` drops them."""

    code = "turn_order"
    description = ("a chat whose turns do not alternate user/assistant after an optional system message, or that "
                   "starts with the assistant or ends with the user (strict chat templates refuse it)")
    default_action = "flag"
    kinds = ("chat",)
    roles = ("prompt", "response", "system")

    def match(self, cells, ctx):
        role = pl.col("role")
        prev = role.shift(1).over("_row", order_by="pos")
        # the first user or assistant turn (a system message may come before it)
        start = (role != "system") & ((role != "system").cum_sum().over("_row", order_by="pos") == 1)
        last = pl.col("pos") == pl.col("pos").max().over("_row")
        why = (pl.when((role == "system") & prev.is_not_null()).then(pl.lit("a system message after the chat began"))
               .when((role == "response") & start).then(pl.lit("the chat starts with the assistant"))
               .when((role == prev) & (role == "prompt")).then(pl.lit("two user turns in a row"))
               .when((role == prev) & (role == "response")).then(pl.lit("two assistant turns in a row"))
               .when(last & (role == "prompt")).then(pl.lit("the chat ends with a user turn")))
        return cells.select("_cell", why.alias("evidence")).filter(pl.col("evidence").is_not_null())
