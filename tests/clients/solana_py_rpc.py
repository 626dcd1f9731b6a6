"""solana-py's AsyncClient against worldgate's Solana devnet: every call its response parsers accept.

Run with the interpreter of .venv-x402-svm (solana 0.39, solders 0.27: their strict solders types
are the judge of the devnet's JSON). Input: RPC_URL and TOKEN_ACCOUNT (an SPL account) from the
environment. Output: one JSON line of what came back.
"""

import asyncio
import json
import os

from solana.rpc.async_api import AsyncClient
from solana.rpc.types import TxOpts
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction


async def main() -> None:
    client = AsyncClient(os.environ["RPC_URL"])
    payer, receiver = Keypair(), Keypair().pubkey()
    await client.request_airdrop(payer.pubkey(), 2_000_000_000)
    blockhash = (await client.get_latest_blockhash()).value
    message = MessageV0.try_compile(
        payer.pubkey(),
        [transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=receiver, lamports=1_000_000))],
        [],
        blockhash.blockhash,
    )
    transaction = VersionedTransaction(message, [payer])
    simulated = (await client.simulate_transaction(transaction, sig_verify=True)).value
    signature = (await client.send_transaction(transaction, opts=TxOpts(skip_confirmation=False))).value
    status = (await client.get_signature_statuses([signature])).value[0]
    landed = (await client.get_transaction(signature, max_supported_transaction_version=0)).value
    token = (await client.get_token_account_balance(Pubkey.from_string(os.environ["TOKEN_ACCOUNT"]))).value
    account = (await client.get_account_info(payer.pubkey())).value
    print(
        json.dumps(
            {
                "last_valid_block_height": blockhash.last_valid_block_height,
                "simulation_error": str(simulated.err) if simulated.err else None,
                "units": simulated.units_consumed,
                "signature": str(signature),
                "status_error": str(status.err) if status.err else None,
                "confirmation": str(status.confirmation_status),
                "fee": landed.transaction.meta.fee,
                "receiver_lamports": (await client.get_balance(receiver)).value,
                "payer_owner": str(account.owner),
                "token_amount": token.amount,
                "genesis": (await client.get_genesis_hash()).value.__str__(),
            }
        )
    )
    await client.close()


asyncio.run(main())
