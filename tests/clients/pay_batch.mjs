// The official x402 TypeScript client paying a worldgate URL N times by batch-settlement vouchers:
// @x402/fetch's wrapFetchWithPayment over an x402Client with @x402/evm's BatchSettlementEvmScheme
// registered for the network, unmodified. The signer is a viem account from the private key composed
// with a public client on RPC_URL (toClientEvmSigner), so the scheme reads the channel on chain before
// its first payment as it does in production. It deposits on the first request and signs a voucher per
// request after; its own hooks track the channel from each PAYMENT-RESPONSE.
// Input from the environment: URL, PAYER_KEY (0x hex), NETWORK (CAIP-2), COUNT, RPC_URL.
// Output: one JSON line {statuses, responses: [decoded PAYMENT-RESPONSE...], last_body}.
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { toClientEvmSigner } from "@x402/evm";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { createPublicClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const account = privateKeyToAccount(process.env.PAYER_KEY);
const publicClient = createPublicClient({ transport: http(process.env.RPC_URL) });
const client = new x402Client();
client.register(process.env.NETWORK, new BatchSettlementEvmScheme(toClientEvmSigner(account, publicClient)));
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

const statuses = [];
const responses = [];
let body = "";
for (let i = 0; i < Number(process.env.COUNT); i++) {
  const response = await fetchWithPayment(process.env.URL);
  statuses.push(response.status);
  const header = response.headers.get("payment-response");
  responses.push(header ? decodePaymentResponseHeader(header) : null);
  body = await response.text();
}
console.log(JSON.stringify({ statuses, responses, last_body: body }));
