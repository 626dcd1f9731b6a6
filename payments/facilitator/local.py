"""The local facilitator: our schemes, our relayer keys, our RPCs, routed by (scheme, network)."""

from __future__ import annotations

from typing import Protocol

from ..codec import PaymentPayload, PaymentRequirements, SupportedKind, SupportedResponse
from ..errors import Reason, Refusal
from ..jsonrpc import JsonRpc
from ..outcomes import Inspection, OnBroadcast, Settlement, Verification


class Scheme(Protocol):
    """One scheme on one network with our keys: ExactEvmScheme, ExactSvmScheme."""

    scheme: str
    network: str

    @property
    def signer(self) -> str | None: ...

    def supported_kind(self) -> SupportedKind: ...

    async def authenticate(
        self, payload: PaymentPayload, requirements: PaymentRequirements, inspection: Inspection
    ) -> Refusal | None: ...

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Verification: ...

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements, on_broadcast: OnBroadcast | None = None
    ) -> Settlement: ...


class LocalFacilitator:
    def __init__(self, schemes: list[Scheme], rpcs: list[JsonRpc] | None = None) -> None:
        self._schemes = {(s.scheme, s.network): s for s in schemes}
        self._rpcs = rpcs or []

    @property
    def schemes(self) -> tuple[Scheme, ...]:
        """The schemes this facilitator verifies and settles with (a retry's chain readers use their nodes)."""
        return tuple(self._schemes.values())

    async def authenticate(
        self, payload: PaymentPayload, requirements: PaymentRequirements, inspection: Inspection
    ) -> Refusal | None:
        """The scheme's own check (EVM: getCode, then EIP-1271); no I/O when `inspection.signer_verified`.
        Raises PaymentError when the chain cannot answer."""
        if inspection.signer_verified:
            return None
        scheme = self._schemes.get((requirements.scheme, requirements.network))
        if scheme is None:
            return Refusal(Reason.UNSUPPORTED_SCHEME, f"no {requirements.scheme} on {requirements.network}")
        return await scheme.authenticate(payload, requirements, inspection)

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Verification:
        scheme = self._schemes.get((requirements.scheme, requirements.network))
        if scheme is None:
            return Verification(
                False,
                reason=Reason.UNSUPPORTED_SCHEME,
                message=f"no {requirements.scheme} on {requirements.network}",
            )
        return await scheme.verify(payload, requirements)

    async def settle(
        self,
        payload: PaymentPayload,
        requirements: PaymentRequirements,
        on_broadcast: OnBroadcast | None = None,
    ) -> Settlement:
        scheme = self._schemes.get((requirements.scheme, requirements.network))
        if scheme is None:
            return Settlement(False, requirements.network, reason=Reason.UNSUPPORTED_SCHEME)
        return await scheme.settle(payload, requirements, on_broadcast)

    async def supported(self) -> SupportedResponse:
        signers: dict[str, list[str]] = {}
        for scheme in self._schemes.values():
            family = scheme.network.partition(":")[0] + ":*"
            if scheme.signer and scheme.signer not in signers.setdefault(family, []):
                signers[family].append(scheme.signer)
        return SupportedResponse(kinds=[s.supported_kind() for s in self._schemes.values()], signers=signers)

    async def close(self) -> None:
        for rpc in self._rpcs:
            await rpc.close()
