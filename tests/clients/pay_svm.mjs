// The official x402 TypeScript client paying a worldgate URL on Solana: @x402/fetch with @x402/svm,
// unmodified but for the RPC URL (registerExactSvmScheme takes none, so the scheme is registered by
// hand with one). Input from the environment: URL, RPC_URL, PAYER_SECRET (base58, 64 bytes).
// Output: one JSON line {status, paymentResponse, body}.
import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";

const signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(process.env.PAYER_SECRET));
const client = new x402Client();
client.register("solana:*", new ExactSvmScheme(signer, { rpcUrl: process.env.RPC_URL }));
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

const response = await fetchWithPayment(process.env.URL);
const header = response.headers.get("payment-response");
console.log(
  JSON.stringify({
    status: response.status,
    paymentResponse: header ? decodePaymentResponseHeader(header) : null,
    body: await response.text(),
  }),
);
