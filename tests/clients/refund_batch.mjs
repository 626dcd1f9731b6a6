// The official x402 TypeScript client paying a worldgate URL by batch-settlement vouchers, then asking for its
// cooperative refund: @x402/fetch's wrapFetchWithPayment over an x402Client with @x402/evm's
// BatchSettlementEvmScheme registered, unmodified; the refund is the scheme's own `refund(url, {amount})`, which
// probes the URL for its 402 and sends a `refund` payload with a zero-charge voucher.
// Input from the environment: URL, PAYER_KEY (0x hex), NETWORK (CAIP-2), COUNT (requests paid first), REFUND
// ("all" or an atomic amount), RPC_URL.
// Output: one JSON line {statuses, refund: the SettleResponse or null, error: the refund's error or null}.
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { toClientEvmSigner } from "@x402/evm";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { createPublicClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const account = privateKeyToAccount(process.env.PAYER_KEY);
const publicClient = createPublicClient({ transport: http(process.env.RPC_URL) });
const scheme = new BatchSettlementEvmScheme(toClientEvmSigner(account, publicClient));
const client = new x402Client();
client.register(process.env.NETWORK, scheme);
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

const statuses = [];
for (let i = 0; i < Number(process.env.COUNT); i++) {
  const response = await fetchWithPayment(process.env.URL);
  statuses.push(response.status);
  await response.text();
}
let refund = null;
let error = null;
try {
  const amount = process.env.REFUND === "all" ? undefined : process.env.REFUND;
  refund = await scheme.refund(process.env.URL, amount === undefined ? {} : { amount });
} catch (e) {
  error = String(e?.message ?? e);
}
console.log(JSON.stringify({ statuses, refund, error }));
