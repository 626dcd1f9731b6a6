"""The official x402 MCP client helper paying a worldgate tool, run in the official clients' venv (.venv-x402-svm).

x402 2.25.0's x402.mcp is written for the mcp 1.x client (ClientSession, camelCase result fields, timedelta
timeouts), while worldgate runs mcp 2.x, hence the separate interpreter. Input from the environment: MCP_URL (the
gateway's /mcp), PAYER_KEY (0x hex), TOOL, ARGUMENTS (JSON). Output: one JSON line
{paymentMade, isError, paymentResponse, structuredContent, protocolVersion}.
"""

import asyncio
import json
import os

from eth_account import Account
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client


async def main() -> None:
    payer = x402Client()  # default spend controls: devnet USDC is a known asset, at most $1
    register_exact_evm_client(payer, EthAccountSigner(Account.from_key(os.environ["PAYER_KEY"])))
    async with (
        streamable_http_client(os.environ["MCP_URL"]) as (read, write, _session_id),
        ClientSession(read, write) as session,
    ):
        paying = x402MCPSession(session, payer)  # auto_payment: unpaid probe, pay the quote, retry with _meta
        initialized = await session.initialize()
        result = await paying.call_tool(os.environ["TOOL"], json.loads(os.environ["ARGUMENTS"]))
    settled = result.payment_response
    print(
        json.dumps(
            {
                "paymentMade": result.payment_made,
                "isError": result.is_error,
                "paymentResponse": settled.model_dump(by_alias=True) if hasattr(settled, "model_dump") else settled,
                "structuredContent": result.raw_result.structuredContent,
                "protocolVersion": initialized.protocolVersion,
            }
        )
    )


asyncio.run(main())
