// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Shared pieces of worldgate's devnet batch-settlement contracts (written for the devnet, not
///        copied from x402): token interfaces, the deposit-collector interface, signature checking and
///        a safe ERC-20 transfer. No contract here is named after this file, so it gets no artifact.

interface IBatchERC20 {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
}

/// @dev The bytes-signature overload of EIP-3009's receiveWithAuthorization (FiatToken v2.2 has it).
interface IBatchERC3009 {
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external;
}

interface IBatchERC1271 {
    function isValidSignature(bytes32 digest, bytes memory signature) external view returns (bytes4);
}

/// @notice A collector pulls `amount` of `token` from `payer` and delivers it to msg.sender.
interface IDepositCollector {
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external;
}

/// @notice Raised when a token transfer reverts or returns false.
error TokenTransferFailed(address token);

library BatchTokens {
    /// @dev Like OpenZeppelin's safeTransfer: accepts no return data or a true bool, anything else reverts.
    function safeTransfer(address token, address to, uint256 value) internal {
        (bool ok, bytes memory answer) = token.call(abi.encodeCall(IBatchERC20.transfer, (to, value)));
        if (!ok || (answer.length != 0 && !abi.decode(answer, (bool))) || (answer.length == 0 && token.code.length == 0))
        {
            revert TokenTransferFailed(token);
        }
    }
}

/// @notice ECDSA recovery that refuses malleable signatures, and EIP-1271 for contract signers.
library BatchSignatures {
    // secp256k1n / 2: a larger s is the malleable twin of a valid signature.
    uint256 private constant S_MAX = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;

    /// @dev The signer of a 65-byte (r, s, v) signature, or address(0) if it is malformed or malleable.
    function recover(bytes32 digest, bytes memory signature) internal pure returns (address) {
        if (signature.length != 65) {
            return address(0);
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (uint256(s) > S_MAX || (v != 27 && v != 28)) {
            return address(0);
        }
        return ecrecover(digest, v, r, s);
    }

    /// @dev True if `signer` (non-zero) signed `digest` with ECDSA.
    function isValidECDSA(address signer, bytes32 digest, bytes memory signature) internal pure returns (bool) {
        return signer != address(0) && recover(digest, signature) == signer;
    }

    /// @dev SignatureChecker semantics: an ECDSA signature by `signer`, else EIP-1271 if `signer` has code.
    function isValidNow(address signer, bytes32 digest, bytes memory signature) internal view returns (bool) {
        if (isValidECDSA(signer, digest, signature)) {
            return true;
        }
        if (signer.code.length == 0) {
            return false;
        }
        (bool ok, bytes memory answer) =
            signer.staticcall(abi.encodeCall(IBatchERC1271.isValidSignature, (digest, signature)));
        return ok && answer.length >= 32 && abi.decode(answer, (bytes32)) == bytes32(ERC1271_MAGIC);
    }
}
