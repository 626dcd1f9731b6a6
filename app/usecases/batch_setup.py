"""Batch settlement from the settings: its offer terms, its chain client, its checkout and its settler.

Offered only with the local facilitator on an EVM network (a remote facilitator settles `exact` alone
here), and only when `WORLDGATE_SCHEMES` names it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import asyncpg
from eth_account import Account

import ledger
from app.runtime.settings import Settings
from app.usecases.batch_checkout import BatchCheckout, BatchTerms
from app.usecases.batch_settler import BatchSettler
from app.usecases.services import Services
from payments import EvmRpc, NetworkTerms
from payments.evm.batch import SCHEME, BatchSettlementChain, LocalAuthorizer, batch_terms, rows_per_claim
from payments.evm.relayer import Relayer

log = logging.getLogger("worldgate.batch")
# Claims carry many rows (~25k gas each): the batch relayer signs with a limit that fits dozens.
CLAIM_GAS_LIMIT = 1_500_000


def offered(settings: Settings) -> bool:
    evm = settings.evm
    return (
        SCHEME in settings.schemes
        and evm is not None
        and settings.facilitator_url is None
        and evm.rpc_url is not None
        and (evm.receiver_authorizer_key or evm.relayer_key) is not None
    )


def authorizer_key(settings: Settings) -> str:
    assert settings.evm is not None
    key = settings.evm.receiver_authorizer_key or settings.evm.relayer_key
    assert key is not None
    return key


def terms(settings: Settings, exact: NetworkTerms) -> NetworkTerms:
    """The batch offer's terms on the EVM network: exact's asset, payTo and token domain, plus the channel's."""
    authorizer = str(Account.from_key(authorizer_key(settings)).address)
    offered = batch_terms(exact, authorizer, withdraw_delay=settings.batch.withdraw_delay_s)
    # minDeposit: the official clients deposit at least this, so one deposit pays for many requests
    return dataclasses.replace(offered, extra={**offered.extra, "minDeposit": str(settings.batch.min_deposit)})


@dataclass
class BatchParts:
    checkout: BatchCheckout
    settler: BatchSettler
    rpc: EvmRpc


def build(settings: Settings, pool: asyncpg.Pool, services: Services) -> BatchParts:
    """The chain client (its own RPC and a relayer with room for large claims, sharing the exact relayer's
    Postgres lock so their nonces never collide), the checkout and the settler."""
    evm = settings.evm
    assert evm is not None and evm.rpc_url and evm.relayer_key
    rpc = EvmRpc(evm.rpc_url, timeout_s=evm.rpc_timeout_s)
    gas_limit = max(evm.gas_limit, CLAIM_GAS_LIMIT)
    relayer = Relayer(
        rpc,
        evm.relayer_key,
        evm.chain_id,
        gas_limit=gas_limit,
        shared_lock=lambda address: ledger.locks.advisory_lock(pool, f"relayer:{evm.chain_id}:{address.lower()}"),
    )
    chain = BatchSettlementChain(
        evm.network, rpc, relayer, LocalAuthorizer(authorizer_key(settings)), receipt_timeout_s=evm.receipt_timeout_s
    )
    batch = settings.batch
    checkout = BatchCheckout(services, chain, BatchTerms(batch.max_unsettled))
    settler = BatchSettler(
        pool,
        chain,
        pay_to=evm.pay_to,
        token=evm.asset,
        rows_per_claim=rows_per_claim(gas_limit),
        claim_interval_s=batch.claim_interval_s,
        settle_interval_s=batch.settle_interval_s,
        rpc=rpc,
    )
    return BatchParts(checkout, settler, rpc)
