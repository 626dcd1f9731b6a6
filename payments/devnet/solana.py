"""A local Solana JSON-RPC server over `solders.litesvm.LiteSVM`: the Solana half of the devnet.

It answers the methods real clients use (the TS `@solana/kit` RPC, solana-py's AsyncClient, our
own SvmRpc) over HTTP on 127.0.0.1, and reports itself as Solana devnet
(`solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1`). At start it seeds an SPL USDC mint (6 decimals) at
devnet USDC's address, payTo's associated token account, a payer holding test USDC and a fee payer
holding SOL; keys come from fixed labels, so every devnet has the same ones (devnet money only).

Run as its own process (`python -m payments.devnet.solana --port N`; HTTP from jsonrpc_http.py); the
first line it prints is its state as JSON. One LiteSVM behind a lock. Unlike a validator, blockhashes
do not age: `litesvm_expireBlockhash` rotates it.
Extra methods for tests: `litesvm_mintTo [owner, amount]`, `litesvm_expireBlockhash`, and
`litesvm_hold` / `litesvm_release` (sent transactions wait unprocessed, as on a congested cluster).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import base58
from solders.account import Account
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcResponseContext, RpcSimulateTransactionResult, SimulateTransactionResp
from solders.token.state import Mint, TokenAccount, TokenAccountState
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

from ..svm.programs import TOKEN_PROGRAM, associated_token_address
from .jsonrpc_http import RpcFault, make_server

NETWORK = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
GENESIS_HASH = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"  # Solana devnet's
USDC_MINT = Pubkey.from_string("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU")  # devnet USDC's address
DECIMALS = 6
PAYER_USDC_ATOMIC = 1_000 * 10**6
FEE_PAYER_LAMPORTS = 100 * 10**9
BLOCKHASH_LIFETIME_BLOCKS = 150
START_TIMEOUT_S = 20.0
TOKEN_ACCOUNT_BYTES, MINT_BYTES = 165, 82


def devnet_keypair(label: str) -> Keypair:
    """A deterministic keypair for a devnet role. Devnet only: everyone can derive it."""
    return Keypair.from_seed(hashlib.sha256(f"worldgate devnet solana {label}".encode()).digest())


def _err_json(error: Any) -> Any:
    """A solders TransactionError as the JSON a validator's RPC gives (`"AlreadyProcessed"`, ...)."""
    result = RpcSimulateTransactionResult(err=error, logs=None, accounts=None, units_consumed=None, return_data=None)
    return json.loads(SimulateTransactionResp(result, RpcResponseContext(0)).to_json())["result"]["value"]["err"]


@dataclass
class _Landed:
    slot: int
    err: Any
    fee: int
    transaction: bytes
    pre_balances: list[int]
    post_balances: list[int]
    pre_tokens: list[dict[str, Any]]
    post_tokens: list[dict[str, Any]]
    logs: list[str]
    units: int


class SolanaChain:
    """One LiteSVM and the RPC methods over it; every method runs under one lock."""

    def __init__(self) -> None:
        self.svm = LiteSVM()
        self.lock = threading.Lock()
        self.block_height = 1
        self.landed: dict[str, _Landed] = {}
        self.held: list[VersionedTransaction] | None = None  # with litesvm_hold, sent but not yet processed
        self.mint_authority = devnet_keypair("mint authority")
        self.fee_payer = devnet_keypair("fee payer")
        self.payer = devnet_keypair("payer")
        self.pay_to = devnet_keypair("pay to").pubkey()
        self._seed()

    # ---- state helpers ----

    def _seed(self) -> None:
        rent = self.svm.minimum_balance_for_rent_exemption(MINT_BYTES)
        mint = Mint(mint_authority=self.mint_authority.pubkey(), supply=0, decimals=DECIMALS, is_initialized=True)
        self.svm.set_account(USDC_MINT, Account(rent, bytes(mint), TOKEN_PROGRAM, False, 0))
        self.svm.airdrop(self.fee_payer.pubkey(), FEE_PAYER_LAMPORTS)
        self.svm.airdrop(self.payer.pubkey(), 10**9)  # for clients that want to pay their own fees
        self.mint_to(self.pay_to, 0)
        self.mint_to(self.payer.pubkey(), PAYER_USDC_ATOMIC)

    def _token_account(self, address: Pubkey) -> TokenAccount | None:
        account = self.svm.get_account(address)
        if account is None or account.owner != TOKEN_PROGRAM or len(account.data) < TOKEN_ACCOUNT_BYTES:
            return None
        return TokenAccount.from_bytes(bytes(account.data)[:TOKEN_ACCOUNT_BYTES])

    def mint_to(self, owner: Pubkey, amount: int) -> Pubkey:
        """Credit `amount` devnet USDC to `owner`'s ATA, creating it (rent-exempt) if missing."""
        ata = associated_token_address(owner, USDC_MINT)
        held = self._token_account(ata)
        token = TokenAccount(
            mint=USDC_MINT,
            owner=owner,
            amount=(held.amount if held else 0) + amount,
            delegate=None,
            state=TokenAccountState.Initialized,
            is_native=None,
            delegated_amount=0,
            close_authority=None,
        )
        rent = self.svm.minimum_balance_for_rent_exemption(TOKEN_ACCOUNT_BYTES)
        self.svm.set_account(ata, Account(rent, bytes(token), TOKEN_PROGRAM, False, 0))
        mint_account = self.svm.get_account(USDC_MINT)
        assert mint_account is not None
        mint = Mint.from_bytes(bytes(mint_account.data))
        grown = Mint(
            mint_authority=mint.mint_authority, supply=mint.supply + amount, decimals=DECIMALS, is_initialized=True
        )
        self.svm.set_account(USDC_MINT, Account(mint_account.lamports, bytes(grown), TOKEN_PROGRAM, False, 0))
        return ata

    def _slot(self) -> int:
        return int(self.svm.get_clock().slot)

    def _context(self) -> dict[str, int]:
        return {"slot": self._slot()}

    def _token_balances(self, keys: list[Pubkey]) -> list[dict[str, Any]]:
        balances = []
        for index, key in enumerate(keys):
            token = self._token_account(key)
            if token is not None:
                ui = token.amount / 10**DECIMALS
                balances.append(
                    {
                        "accountIndex": index,
                        "mint": str(token.mint),
                        "owner": str(token.owner),
                        "programId": str(TOKEN_PROGRAM),
                        "uiTokenAmount": {
                            "amount": str(token.amount),
                            "decimals": DECIMALS,
                            "uiAmount": ui,
                            "uiAmountString": f"{ui:.{DECIMALS}f}".rstrip("0").rstrip("."),
                        },
                    }
                )
        return balances

    @staticmethod
    def _decode(params: list[Any]) -> VersionedTransaction:
        if not params or not isinstance(params[0], str):
            raise RpcFault(-32602, "expected an encoded transaction")
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        try:
            raw = base64.b64decode(params[0]) if config.get("encoding") == "base64" else base58.b58decode(params[0])
            return VersionedTransaction.from_bytes(raw)
        except ValueError as exc:
            raise RpcFault(-32602, f"invalid transaction: {exc}") from None

    # ---- RPC methods (names as the RPC has them) ----

    def getHealth(self, params: list[Any]) -> Any:
        return "ok"

    def getVersion(self, params: list[Any]) -> Any:
        return {"solana-core": "2.2.0-litesvm", "feature-set": 0}

    def getGenesisHash(self, params: list[Any]) -> Any:
        return GENESIS_HASH

    def getSlot(self, params: list[Any]) -> Any:
        return self._slot()

    def getBlockHeight(self, params: list[Any]) -> Any:
        return self.block_height

    def getEpochInfo(self, params: list[Any]) -> Any:
        slot = self._slot()
        return {
            "absoluteSlot": slot,
            "blockHeight": self.block_height,
            "epoch": 0,
            "slotIndex": slot,
            "slotsInEpoch": 432000,
            "transactionCount": len(self.landed),
        }

    def getLatestBlockhash(self, params: list[Any]) -> Any:
        value = {
            "blockhash": str(self.svm.latest_blockhash()),
            "lastValidBlockHeight": self.block_height + BLOCKHASH_LIFETIME_BLOCKS,
        }
        return {"context": self._context(), "value": value}

    def isBlockhashValid(self, params: list[Any]) -> Any:
        return {"context": self._context(), "value": bool(params) and params[0] == str(self.svm.latest_blockhash())}

    def getMinimumBalanceForRentExemption(self, params: list[Any]) -> Any:
        return int(self.svm.minimum_balance_for_rent_exemption(int(params[0])))

    def getFeeForMessage(self, params: list[Any]) -> Any:
        message = MessageV0.from_bytes(base64.b64decode(params[0])[1:])  # v0 prefix byte
        return {"context": self._context(), "value": 5000 * message.header.num_required_signatures}

    def getBalance(self, params: list[Any]) -> Any:
        return {"context": self._context(), "value": int(self.svm.get_balance(Pubkey.from_string(params[0])) or 0)}

    def _account_json(self, address: str) -> Any:
        account = self.svm.get_account(Pubkey.from_string(address))
        if account is None:
            return None
        data = bytes(account.data)
        return {
            "data": [base64.b64encode(data).decode(), "base64"],
            "executable": account.executable,
            "lamports": account.lamports,
            "owner": str(account.owner),
            "rentEpoch": 0,
            "space": len(data),
        }

    def getAccountInfo(self, params: list[Any]) -> Any:
        return {"context": self._context(), "value": self._account_json(params[0])}

    def getMultipleAccounts(self, params: list[Any]) -> Any:
        return {"context": self._context(), "value": [self._account_json(a) for a in params[0]]}

    def getTokenAccountBalance(self, params: list[Any]) -> Any:
        token = self._token_account(Pubkey.from_string(params[0]))
        if token is None:
            raise RpcFault(-32602, "Invalid param: not a Token account")
        return {
            "context": self._context(),
            "value": self._token_balances([Pubkey.from_string(params[0])])[0]["uiTokenAmount"],
        }

    def requestAirdrop(self, params: list[Any]) -> Any:
        outcome = self.svm.airdrop(Pubkey.from_string(params[0]), int(params[1]))
        if isinstance(outcome, FailedTransactionMetadata):
            raise RpcFault(-32603, f"airdrop failed: {_err_json(outcome.err())}")
        return str(outcome.signature())

    def simulateTransaction(self, params: list[Any]) -> Any:
        transaction = self._decode(params)
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        if config.get("replaceRecentBlockhash"):
            message = transaction.message
            message = MessageV0(
                message.header,
                message.account_keys,
                self.svm.latest_blockhash(),
                message.instructions,
                message.address_table_lookups,
            )
            transaction = VersionedTransaction.populate(message, transaction.signatures)
        sig_verify = bool(config.get("sigVerify", False))
        self.svm.with_sigverify(sig_verify)
        try:
            outcome = self.svm.simulate_transaction(transaction)
        finally:
            self.svm.with_sigverify(True)
        if isinstance(outcome, FailedTransactionMetadata):
            meta, err = outcome.meta(), _err_json(outcome.err())
        else:
            meta, err = outcome.meta(), None
        value = {
            "err": err,
            "logs": list(meta.logs()),
            "accounts": None,
            "unitsConsumed": meta.compute_units_consumed(),
            "returnData": None,
        }
        return {"context": self._context(), "value": value}

    def sendTransaction(self, params: list[Any]) -> Any:
        transaction = self._decode(params)
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        signature = str(transaction.signatures[0])
        if not config.get("skipPreflight"):
            simulated = self.simulateTransaction([params[0], {"encoding": config.get("encoding"), "sigVerify": True}])[
                "value"
            ]
            if simulated["err"] is not None:
                raise RpcFault(-32002, f"Transaction simulation failed: {simulated['err']}", simulated)
        if self.held is not None:
            self.held.append(transaction)  # accepted like a validator under load: it lands later, or never
            return signature
        return self._process(transaction)

    def _process(self, transaction: VersionedTransaction) -> str:
        signature = str(transaction.signatures[0])
        keys = list(transaction.message.account_keys)
        pre_balances = [int(self.svm.get_balance(k) or 0) for k in keys]
        pre_tokens = self._token_balances(keys)
        outcome = self.svm.send_transaction(transaction)
        if isinstance(outcome, FailedTransactionMetadata):
            err = _err_json(outcome.err())
            if err in ("AlreadyProcessed", "BlockhashNotFound", "SignatureFailure"):
                return signature  # a validator drops these: the signature answers, nothing lands
            meta = outcome.meta()
        else:
            err, meta = None, outcome
        self.block_height += 1
        self.svm.warp_to_slot(self._slot() + 1)
        self.landed[signature] = _Landed(
            slot=self._slot(),
            err=err,
            fee=int(meta.fee()) if hasattr(meta, "fee") else 0,
            transaction=bytes(transaction),
            pre_balances=pre_balances,
            post_balances=[int(self.svm.get_balance(k) or 0) for k in keys],
            pre_tokens=pre_tokens,
            post_tokens=self._token_balances(keys),
            logs=list(meta.logs()),
            units=int(meta.compute_units_consumed()),
        )
        return signature

    def getSignatureStatuses(self, params: list[Any]) -> Any:
        statuses = []
        for signature in params[0]:
            landed = self.landed.get(signature)
            if landed is None:
                statuses.append(None)
                continue
            status = {"Ok": None} if landed.err is None else {"Err": landed.err}
            statuses.append(
                {
                    "slot": landed.slot,
                    "confirmations": None,
                    "err": landed.err,
                    "status": status,
                    "confirmationStatus": "finalized",
                }
            )
        return {"context": self._context(), "value": statuses}

    def getSignaturesForAddress(self, params: list[Any]) -> Any:
        """Landed transactions that name the address, newest first: `limit` (1 to 1000, default 1000), starting
        after the signature `before` and stopping at `until` (neither included), as a validator pages."""
        address = Pubkey.from_string(params[0])
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        limit = int(config.get("limit", 1000))
        if not 1 <= limit <= 1000:
            raise RpcFault(-32602, "Invalid limit; max 1000")
        before, until = config.get("before"), config.get("until")
        found: list[dict[str, Any]] = []
        started = before is None
        for signature, landed in reversed(self.landed.items()):
            if not started:
                started = signature == before
                continue
            if signature == until or len(found) >= limit:
                break
            if address in VersionedTransaction.from_bytes(landed.transaction).message.account_keys:
                found.append({"signature": signature, "slot": landed.slot, "err": landed.err, "memo": None,
                              "blockTime": None, "confirmationStatus": "finalized"})  # fmt: skip
        return found

    def getTransaction(self, params: list[Any]) -> Any:
        landed = self.landed.get(params[0])
        if landed is None:
            return None
        meta = {
            "err": landed.err,
            "status": {"Ok": None} if landed.err is None else {"Err": landed.err},
            "fee": landed.fee,
            "preBalances": landed.pre_balances,
            "postBalances": landed.post_balances,
            "preTokenBalances": landed.pre_tokens,
            "postTokenBalances": landed.post_tokens,
            "logMessages": landed.logs,
            "innerInstructions": [],
            "loadedAddresses": {"readonly": [], "writable": []},
            "computeUnitsConsumed": landed.units,
            "rewards": [],
        }
        return {
            "slot": landed.slot,
            "blockTime": int(time.time()),
            "version": 0,
            "transaction": [base64.b64encode(landed.transaction).decode(), "base64"],
            "meta": meta,
        }

    # ---- cheats for tests ----

    def litesvm_mintTo(self, params: list[Any]) -> Any:
        return str(self.mint_to(Pubkey.from_string(params[0]), int(params[1])))

    def litesvm_hold(self, params: list[Any]) -> Any:
        """From now on, accept sent transactions without processing them (a congested validator)."""
        self.held = self.held if self.held is not None else []
        return True

    def litesvm_release(self, params: list[Any]) -> Any:
        """Process what was held, in order (transactions whose blockhash expired are dropped), and stop holding."""
        held, self.held = self.held or [], None
        return [self._process(transaction) for transaction in held]

    def litesvm_expireBlockhash(self, params: list[Any]) -> Any:
        self.svm.expire_blockhash()
        self.block_height += BLOCKHASH_LIFETIME_BLOCKS + 1
        return str(self.svm.latest_blockhash())

    def call(self, method: str, params: list[Any]) -> Any:
        handler = getattr(self, method, None) if not method.startswith("_") and method[0].islower() else None
        if handler is None or method in ("call", "mint_to"):
            raise RpcFault(-32601, f"Method not found: {method}")
        with self.lock:
            try:
                return handler(params)
            except (IndexError, KeyError, TypeError, ValueError) as exc:
                raise RpcFault(-32602, f"Invalid params: {exc}") from None

    def state(self, rpc_url: str) -> dict[str, Any]:
        return {
            "network": NETWORK,
            "rpc_url": rpc_url,
            "asset": str(USDC_MINT),
            "decimals": DECIMALS,
            "pay_to": str(self.pay_to),
            "fee_payer": str(self.fee_payer.pubkey()),
            "fee_payer_secret_key": str(self.fee_payer),
            "payer_address": str(self.payer.pubkey()),
            "payer_secret_key": str(self.payer),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A Solana JSON-RPC devnet over LiteSVM (worldgate)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    chain = SolanaChain()
    server = make_server(chain, args.port)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(json.dumps(chain.state(url)), flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
