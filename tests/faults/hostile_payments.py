"""A hostile corpus entry turned into what is sent (tests/faults/test_hostile_inputs.py runs them): the header or
MCP meta verbatim, or a real payment for the route's live offer, signed at test time by a funded payer and then
edited as the entry says (the signed authorization's fields, the signature's bytes, the Solana transaction's
layout, the v2 or v1 document). Signed payments cannot be static files: signatures expire, nonces are single-use.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer

from payments.devnet.evm import EvmDevnet
from payments.evm.eip712 import SECP256K1_N
from payments.evm.exact import ERC6492_SUFFIX
from payments.networks import V1_NAMES
from payments.svm import programs

from .. import svm
from ..chain import b64, sign_authorization, unb64
from ..svm import ata, fee_payer_key, instructions_with, legacy_header, lookup_table_header, transfer_ix

STRANGER_KEY = "0x" + "42" * 32


# ---- building a corpus entry's payment ----


def _value(template: Any, offer: dict[str, Any], document: dict[str, Any]) -> Any:
    """A mutation's value, with the corpus' placeholders filled from the live offer and payment."""
    if isinstance(template, dict) and "$nest" in template:
        nested: Any = 1
        for _ in range(int(template["$nest"])):
            nested = [nested]
        return nested
    if isinstance(template, dict) and "$fill" in template:
        return "A" * int(template["$fill"])
    if not isinstance(template, str) or not template.startswith("$"):
        return template
    pay_to = offer["payTo"]
    if template == "$payTo-lower":
        return pay_to.lower()
    if template == "$payTo-0X":
        return "0X" + pay_to[2:]
    if template == "$payTo-zero-width":
        return "0x\u200b" + pay_to[2:]
    if template == "$payTo-homoglyph":  # the first letter with a Cyrillic twin, swapped for it
        twins = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "B": "\u0412", "C": "\u0421", "E": "\u0415"}
        index = next(i for i, char in enumerate(pay_to) if i > 1 and char in twins)
        return pay_to[:index] + twins[pay_to[index]] + pay_to[index + 1 :]
    if template == "$validBefore+60":
        return str(int(document["payload"]["authorization"]["validBefore"]) + 60)
    raise ValueError(f"unknown corpus placeholder {template}")


def _mutate(document: Any, mutations: dict[str, Any], offer: dict[str, Any]) -> Any:
    for dotted, template in mutations.items():
        *parents, last = dotted.split(".")
        target = document
        for step in parents:
            target = target.setdefault(step, {})
        if isinstance(template, dict) and template.get("$delete"):
            target.pop(last, None)
        else:
            target[last] = _value(template, offer, document)
    return document


def _now_relative(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("now"):
        return int(time.time()) + int(value[3:])
    return value


def _evm_payload(entry: dict[str, Any], key: str, devnet: EvmDevnet, offer: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"to": offer["payTo"], "value": int(offer["amount"])}
    fields.update({name: _now_relative(value) for name, value in entry.get("sign", {}).items()})
    if fields.pop("key", None) == "stranger":  # the payer's address, a stranger's signature
        fields["from_address"] = Account.from_key(key).address
        key = STRANGER_KEY
    payload = sign_authorization(key, devnet, **fields)
    raw = bytes.fromhex(payload["signature"][2:])
    edit = entry.get("signature")
    if edit == "truncate64":
        raw = raw[:64]
    elif edit == "high-s":  # the malleable twin: s' = n - s with v flipped recovers the same key
        s = SECP256K1_N - int.from_bytes(raw[32:64], "big")
        raw = raw[:32] + s.to_bytes(32, "big") + bytes([55 - raw[64]])
    elif edit == "v29":
        raw = raw[:64] + bytes([29])
    elif edit == "erc6492":
        raw = raw + bytes(32) + ERC6492_SUFFIX
    payload["signature"] = "0x" + raw.hex()
    return payload


def _svm_transaction(
    knobs: dict[str, Any], payer: Keypair, state: dict[str, Any], offer: dict[str, Any], recent: Any
) -> str:
    """The reference client's transaction (compute limit, price, TransferChecked, memo) with `knobs` applied."""
    if knobs.get("legacy"):
        return str(unb64(legacy_header(payer, state, offer))["payload"]["transaction"])
    if knobs.get("lookup_table"):
        return str(unb64(lookup_table_header(payer, state, offer))["payload"]["transaction"])
    parts: dict[str, Any] = {}
    signers = [payer]
    fee_payer = None
    if "price" in knobs:
        parts["price"] = programs.compute_unit_price(int(knobs["price"]))
    transfer_changes: dict[str, Any] = {}
    if knobs.get("mint") == "random":
        transfer_changes["mint"] = Pubkey.new_unique()
    if knobs.get("destination") == "payTo-wallet":
        transfer_changes["destination"] = Pubkey.from_string(offer["payTo"])
    if "amount" in knobs:
        transfer_changes["amount"] = int(knobs["amount"])
    if knobs.get("authority") == "fee-payer":
        transfer_changes.update(source=ata(fee_payer_key(offer), offer), authority=fee_payer_key(offer))
        signers = []
    if transfer_changes:
        transfer_changes.setdefault("source", ata(payer.pubkey(), offer))
        transfer_changes.setdefault("authority", payer.pubkey())
        parts["transfer"] = transfer_ix(offer, **transfer_changes)
    if "memos" in knobs:
        memos = [programs.memo(text.encode()) for text in knobs["memos"]]
        parts["memo"] = memos[0] if memos else None
        parts["extra"] = memos[1:]
    if knobs.get("extra") == "system-transfer":
        stranger = Pubkey.new_unique()
        parts["extra"] = [transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=stranger, lamports=1))]
    if knobs.get("extra_signers"):
        extras = [Keypair() for _ in range(int(knobs["extra_signers"]))]
        metas = [AccountMeta(k.pubkey(), is_signer=True, is_writable=False) for k in extras]
        parts["memo"] = Instruction(programs.MEMO_PROGRAM, b"co-signed-memo-0001", metas)
        signers = [payer, *extras]
    if knobs.get("fee_payer") == "payer":
        fee_payer, signers = payer.pubkey(), []
    instructions = instructions_with(payer, offer, **parts)
    header = svm.pay(
        payer, state, offer, instructions=instructions, fee_payer=fee_payer, signers=signers, recent=recent
    )
    encoded = str(unb64(header)["payload"]["transaction"])
    raw = bytearray(base64.b64decode(encoded))
    if "truncate" in knobs:
        raw = raw[: int(knobs["truncate"])]
    if knobs.get("strip_signatures"):
        raw = bytearray([0]) + raw[1 + 64 * raw[0] :]  # a signature count of zero, the message kept
    if knobs.get("tamper_signature"):
        raw[1 + 64 + 10] ^= 0xFF  # inside the client's signature (slot 1)
    return base64.b64encode(bytes(raw)).decode()


def _v1(document: dict[str, Any]) -> dict[str, Any]:
    """A v2 payment as a v1 X-PAYMENT document: scheme and network (v1 names) instead of `accepted`."""
    names = {caip2: name for name, caip2 in V1_NAMES.items()}
    accepted = document["accepted"]
    network = names.get(accepted["network"], accepted["network"])
    return {"x402Version": 1, "scheme": accepted["scheme"], "network": network, "payload": document["payload"]}


@dataclass
class Payer:
    evm_key: str
    svm_keypair: Keypair


@dataclass
class Sent:
    """One corpus entry, ready for one transport."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    meta: Any = None
    query: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


def build(
    entry: dict[str, Any],
    transport: str,
    payer: Payer,
    offers: dict[str, dict[str, Any]],
    devnet: EvmDevnet,
    state: dict[str, Any],
    recent: Any,
) -> Sent:
    name = {"v2-header": "PAYMENT-SIGNATURE", "v1-header": "X-PAYMENT"}.get(transport, "")
    sent = Sent(query=entry.get("query", ""), arguments=dict(entry.get("arguments", {})))
    header: str
    meta: Any
    if "header" in entry:
        header = meta = entry["header"]
    elif "header_fill" in entry:
        fill = entry["header_fill"]
        header = fill["char"] * fill["bytes"]
        meta = {"x402Version": 2, "padding": header}
    elif "base64_of_text" in entry or "base64_of_hex" in entry:
        raw = entry["base64_of_text"].encode() if "base64_of_text" in entry else bytes.fromhex(entry["base64_of_hex"])
        header = meta = base64.b64encode(raw).decode()
    elif "document" in entry:
        header, meta = b64(entry["document"]), entry["document"]
    else:
        offer = offers[entry["base"]]
        if entry["base"] == "evm":
            payload = _evm_payload(entry, payer.evm_key, devnet, offer)
        else:
            knobs = entry.get("svm", {})
            payload = {"transaction": _svm_transaction(knobs, payer.svm_keypair, state, offer, recent)}
        document: dict[str, Any] = {"x402Version": 2, "accepted": json.loads(json.dumps(offer)), "payload": payload}
        document = _mutate(document, entry.get("mutate", {}), offer)
        if transport == "v1-header":
            document = _mutate(_v1(document), entry.get("mutate_v1", {}), offer)
        header, meta = b64(document), document
        if entry.get("meta_as_header"):
            meta = header
        also = entry.get("also")
        if also:  # a second payment, valid on its own, in the same request
            other = {"x402Version": 2, "accepted": offer, "payload": _evm_payload({}, payer.evm_key, devnet, offer)}
            if also == "v1-valid":
                sent.headers.append(("X-PAYMENT", b64(_v1(other))))
            else:
                sent.headers.append(("PAYMENT-SIGNATURE", b64(other)))
    if name:
        sent.headers.insert(0, (name, header))
    sent.meta = meta
    return sent
