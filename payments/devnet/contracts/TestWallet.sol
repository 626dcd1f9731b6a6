// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title TestWallet: the smallest EIP-1271 contract wallet, for tests of contract-wallet payments.
/// @notice A signature is valid when it is a 65-byte ECDSA signature of the digest by the wallet's owner.
contract TestWallet {
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 digest, bytes memory signature) external view returns (bytes4) {
        if (signature.length != 65) {
            return 0xffffffff;
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        return ecrecover(digest, v, r, s) == owner ? ERC1271_MAGIC : bytes4(0xffffffff);
    }
}
