"""What usually causes a code and what to try, for `pkspy explain`.

Hand-kept: no source has this. Written for this project from the field's
common failures (OpenSC, pcsc-lite, SoftHSM, YubiKey/PIV, OpenPGP cards, IBM MQ
and GSKit); keyed by the names the decoders give, so a hint follows its code.
"""

CKR = {
    "CKR_HOST_MEMORY": "The module ran out of host memory: look for a huge length or count "
                       "argument, or sessions and objects that are never closed.",
    "CKR_SLOT_ID_INVALID": "The slot ID is not one C_GetSlotList returned. Slot IDs are not "
                           "indexes (SoftHSM uses large random ones): take them from "
                           "C_GetSlotList on every run.",
    "CKR_GENERAL_ERROR": "An unrecoverable failure inside the module. The cause is in the "
                         "module's own log: for OpenSC run with OPENSC_DEBUG=3 and look for "
                         "the first negative 'returning with'.",
    "CKR_FUNCTION_FAILED": "The token could not do it and gave no better reason: look at the "
                           "APDUs of the call (the first error SW) or the module's debug log.",
    "CKR_ARGUMENTS_BAD": "A NULL pointer or an impossible length was passed: check the "
                         "arguments of the failing call in the trace.",
    "CKR_NEED_TO_CREATE_THREADS": "C_Initialize asked for locking the module cannot provide; "
                                  "pass CKF_OS_LOCKING_OK, or NULL arguments.",
    "CKR_CANT_LOCK": "C_Initialize asked for locking the module cannot provide; pass "
                     "CKF_OS_LOCKING_OK, or NULL arguments.",
    "CKR_ATTRIBUTE_SENSITIVE": "The value is secret (CKA_SENSITIVE or not CKA_EXTRACTABLE) and "
                               "cannot be read. Expected for private and secret keys.",
    "CKR_ATTRIBUTE_TYPE_INVALID": "The object has no such attribute. Harmless when a program "
                                  "probes for optional attributes in C_GetAttributeValue (very "
                                  "common); a bug only if the attribute was required.",
    "CKR_ATTRIBUTE_VALUE_INVALID": "A template value is malformed or refused: a CK_ULONG of "
                                   "the wrong size, a curve the token lacks in CKA_EC_PARAMS, "
                                   "a bad CKA_KEY_TYPE.",
    "CKR_ATTRIBUTE_READ_ONLY": "The attribute cannot be set or changed on this object.",
    "CKR_DATA_INVALID": "The input does not suit the mechanism, e.g. raw RSA input not smaller "
                        "than the modulus.",
    "CKR_DATA_LEN_RANGE": "The input has the wrong length for the mechanism: CKM_ECDSA and "
                          "CKM_RSA_PKCS expect a digest or a short block, raw RSA exactly the "
                          "modulus length.",
    "CKR_DEVICE_ERROR": "The token or reader failed: check the reader, the card contacts, and "
                        "the APDUs for 64xx/65xx/6Fxx.",
    "CKR_DEVICE_MEMORY": "The token is full: delete objects it no longer needs.",
    "CKR_DEVICE_REMOVED": "The token went away during the call: reinsert it and open a new "
                          "session.",
    "CKR_ENCRYPTED_DATA_INVALID": "The ciphertext is corrupt, badly padded, or decrypted with "
                                  "the wrong key or mechanism.",
    "CKR_ENCRYPTED_DATA_LEN_RANGE": "The ciphertext length does not fit the key or mechanism "
                                    "(RSA: exactly the modulus length).",
    "CKR_FUNCTION_NOT_SUPPORTED": "The module does not implement this function; the program "
                                  "must do without it or use another module.",
    "CKR_KEY_HANDLE_INVALID": "The handle names no live key: destroyed, a session object of a "
                              "closed session, or a handle from another process.",
    "CKR_KEY_SIZE_RANGE": "The key is too short or too long for the mechanism or token.",
    "CKR_KEY_TYPE_INCONSISTENT": "The key does not fit the mechanism (an EC key with an RSA "
                                 "mechanism, or the reverse).",
    "CKR_KEY_FUNCTION_NOT_PERMITTED": "The key's usage attributes forbid this (CKA_SIGN, "
                                      "CKA_DECRYPT, CKA_DERIVE, CKA_WRAP ... are false).",
    "CKR_MECHANISM_INVALID": "The token does not offer this mechanism here: compare with "
                             "C_GetMechanismList and the mechanism's CKF_ flags.",
    "CKR_MECHANISM_PARAM_INVALID": "The mechanism parameters are wrong: PSS hash/MGF/salt, "
                                   "OAEP label, GCM IV or tag length.",
    "CKR_OBJECT_HANDLE_INVALID": "The handle names no live object: destroyed, a session object "
                                 "of a closed session, or a handle from another process.",
    "CKR_OPERATION_ACTIVE": "An operation of this kind is still open in the session (an Init "
                            "without its final call): finish or cancel it first.",
    "CKR_OPERATION_NOT_INITIALIZED": "C_Sign/C_Decrypt/... without a successful Init in this "
                                     "session, often because the Init failed and the error was "
                                     "ignored.",
    "CKR_PIN_INCORRECT": "Wrong PIN. Every failure spends a try: check how many are left (the "
                         "card's VERIFY answers 63Cx; the token flags CKF_USER_PIN_COUNT_LOW and "
                         "CKF_USER_PIN_FINAL_TRY) before trying again. Check also which PIN (user "
                         "or SO) and its encoding.",
    "CKR_PIN_INVALID": "The PIN has characters or a format the token refuses.",
    "CKR_PIN_LEN_RANGE": "The PIN is shorter or longer than the token allows (ulMinPinLen / "
                         "ulMaxPinLen in C_GetTokenInfo).",
    "CKR_PIN_EXPIRED": "The PIN must be changed before use (C_SetPIN).",
    "CKR_PIN_LOCKED": "No tries left: the PIN is blocked (the card said 6983 or 63C0). Unblock it "
                      "with the PUK / SO PIN (C_InitPIN as SO, or the card's own tool) or "
                      "re-initialise the token.",
    "CKR_PIN_TOO_WEAK": "The token's PIN policy refuses this PIN.",
    "CKR_SESSION_CLOSED": "The session was closed (C_CloseSession, C_CloseAllSessions, "
                          "C_Finalize or token removal) while in use.",
    "CKR_SESSION_COUNT": "Too many sessions are open on the token: close the ones not needed.",
    "CKR_SESSION_HANDLE_INVALID": "The session handle is stale: closed, from before a "
                                  "C_Finalize, or from another process (after fork() the child "
                                  "must start over).",
    "CKR_SESSION_READ_ONLY": "The session was opened without CKF_RW_SESSION: open a read/write "
                             "session to create, change or delete token objects.",
    "CKR_SESSION_EXISTS": "A session is still open where none may be (C_InitToken).",
    "CKR_SESSION_READ_ONLY_EXISTS": "The SO cannot log in while a read-only session is open.",
    "CKR_SESSION_READ_WRITE_SO_EXISTS": "A read-only session cannot be opened while the SO is "
                                        "logged in.",
    "CKR_SIGNATURE_INVALID": "The signature does not verify: wrong key, wrong data or hash, or "
                             "wrong format (PKCS#1 v1.5 vs PSS, raw r||s vs DER ECDSA).",
    "CKR_SIGNATURE_LEN_RANGE": "The signature has the wrong length for the key (raw ECDSA is "
                               "twice the curve size, RSA the modulus size).",
    "CKR_TEMPLATE_INCOMPLETE": "A required attribute is missing: CKA_CLASS, CKA_KEY_TYPE, "
                               "CKA_EC_PARAMS or CKA_MODULUS_BITS for key generation ...",
    "CKR_TEMPLATE_INCONSISTENT": "Attributes of the template contradict each other or the "
                                 "mechanism.",
    "CKR_TOKEN_NOT_PRESENT": "No token in the slot: card not inserted, reader not seen by "
                             "pcscd, or the wrong slot ID.",
    "CKR_TOKEN_NOT_RECOGNIZED": "The module sees a card but cannot handle it (OpenSC: check "
                                "`opensc-tool -n` and card_drivers in opensc.conf).",
    "CKR_TOKEN_WRITE_PROTECTED": "The token is read-only (a switch, a policy, or a driver that "
                                 "only reads).",
    "CKR_USER_ALREADY_LOGGED_IN": "Login is per token, not per session: another session of this "
                                  "program is already logged in. Usually harmless.",
    "CKR_USER_NOT_LOGGED_IN": "The call needs a login (private objects, signing): C_Login first; "
                              "for CKA_ALWAYS_AUTHENTICATE keys, C_Login with "
                              "CKU_CONTEXT_SPECIFIC right after the Init.",
    "CKR_USER_PIN_NOT_INITIALIZED": "The token has no user PIN yet: set one with C_InitPIN "
                                    "while logged in as SO.",
    "CKR_USER_TYPE_INVALID": "The user type is not CKU_SO, CKU_USER or CKU_CONTEXT_SPECIFIC.",
    "CKR_USER_ANOTHER_ALREADY_LOGGED_IN": "The other user (SO or normal user) is logged in: "
                                          "log out first.",
    "CKR_USER_TOO_MANY_TYPES": "Too many users are logged in to the token at once.",
    "CKR_BUFFER_TOO_SMALL": "Usually harmless: the needed length came back and the program "
                            "calls again with a bigger buffer.",
    "CKR_CRYPTOKI_NOT_INITIALIZED": "C_Initialize was not called in this process, or C_Finalize "
                                    "already was; after fork() the child must call "
                                    "C_Initialize again.",
    "CKR_CRYPTOKI_ALREADY_INITIALIZED": "Another part of the process initialised the module "
                                        "already (two libraries sharing it); usually safe to go "
                                        "on.",
    "CKR_DOMAIN_PARAMS_INVALID": "The token does not support these domain parameters: check "
                                 "CKA_EC_PARAMS (explain decodes the curve).",
    "CKR_CURVE_NOT_SUPPORTED": "The token does not support this curve: check CKA_EC_PARAMS.",
    "CKR_RANDOM_NO_RNG": "The token has no random number generator.",
    "CKR_ACTION_PROHIBITED": "The token's policy forbids this action on this object.",
    "CKR_VENDOR_DEFINED": "A vendor's own code: only the module's vendor documents it. Note which "
                          "module the trace loaded and look in its documentation.",
    "CKR_NSS_CERTDB_FAILED": "NSS could not open its certificate database (path, permissions, "
                             "or a database locked by another process).",
    "CKR_NSS_KEYDB_FAILED": "NSS could not open its key database (path, permissions, or a "
                            "database locked by another process).",
}

SW = {
    "61XX": "Not an error: fetch the rest with GET RESPONSE. OpenSC and pyscard do it "
            "themselves.",
    "6CXX": "Not fatal: the card gives the right Le and the command should be resent with it "
            "(OpenSC does this itself).",
    "63CX": "After VERIFY or CHANGE REFERENCE DATA: that many tries remain before the PIN "
            "blocks. A VERIFY with no data only reads the counter and spends nothing. At 63C0 "
            "the PIN is blocked and the next VERIFY gets 6983.",
    "6982": "The command needs a PIN or authentication first (VERIFY in this session, or a "
            "secure channel). PIV: the key's slot needs the PIN verified right before.",
    "6983": "No tries left: the PIN (or key) is blocked. Unblock with the PUK (RESET RETRY "
            "COUNTER) or the card's admin PIN; when the PUK is blocked too, the applet must be "
            "reset.",
    "6984": "The reference data cannot be used: PIN not set, invalidated, or a default PIN that "
            "must be changed first.",
    "6985": "Commands in the wrong order or a condition unmet (no key selected with MSE, GET "
            "RESPONSE with nothing pending, YubiKey waiting for a touch).",
    "6A82": "Often harmless: middleware probes for applets and files a card may not have. A "
            "problem only when the AID or file it needs is missing.",
    "6A88": "Nothing at that reference: no key, certificate or data object (PIV: empty slot).",
    "6A80": "The command data is malformed (TLV structure or values).",
    "6A81": "The card or applet does not support this function (GlobalPlatform: card locked).",
    "6A86": "P1/P2 name a mode or reference the card does not support.",
    "6B00": "P1/P2 are wrong, e.g. an offset beyond the end of the file.",
    "6D00": "The selected applet does not know this instruction: wrong applet selected, or a "
            "driver made for another card.",
    "6E00": "The class byte is refused: secure-messaging or channel bits the card does not "
            "support, or a proprietary class.",
    "6700": "Lc or Le does not fit the command.",
    "6F00": "No precise diagnosis, often an exception inside the applet: look at the command "
            "just before.",
    "6581": "Writing to the card's memory failed; the card may be worn out.",
    "6282": "The file is shorter than asked; normal at the end of a read loop.",
    "6285": "OpenPGP card: the applet is terminated. ACTIVATE FILE (00 44 00 00) restarts it "
            "with factory defaults.",
    "6999": "Java Card: the applet refused selection or is not installed properly.",
    "6283": "The selected file is deactivated (GlobalPlatform: the card is locked).",
}

SC_ERROR = {
    "SC_ERROR_NO_READERS_FOUND": "No readers: is pcscd running and does it see the reader "
                                 "(pcsc_scan, opensc-tool -l)? In a container the pcscd socket "
                                 "must be shared.",
    "SC_ERROR_CARD_NOT_PRESENT": "No card in the reader: check with opensc-tool -l or pcsc_scan.",
    "SC_ERROR_CARD_REMOVED": "The card was removed during the operation.",
    "SC_ERROR_CARD_RESET": "Another program reset the card (gpg's scdaemon is a frequent one); "
                           "OpenSC reconnects, repeated resets point to competing programs.",
    "SC_ERROR_TRANSMIT_FAILED": "The APDU did not reach the card: reader or driver trouble, see "
                                "the PC/SC code logged before it.",
    "SC_ERROR_KEYPAD_TIMEOUT": "Nobody entered the PIN on the reader's PIN pad in time.",
    "SC_ERROR_KEYPAD_CANCELLED": "The PIN entry was cancelled on the PIN pad.",
    "SC_ERROR_CARD_UNRESPONSIVE": "The card does not answer: reseat it, clean the contacts, try "
                                  "another reader.",
    "SC_ERROR_READER_LOCKED": "Another program holds the reader exclusively.",
    "SC_ERROR_CARD_CMD_FAILED": "The card answered with an error status word OpenSC has no "
                                "specific code for: the SW is in the APDU just before.",
    "SC_ERROR_FILE_NOT_FOUND": "SW 6A82. Often harmless while OpenSC probes for files and "
                               "applets a card may lack: see which SELECT failed.",
    "SC_ERROR_INS_NOT_SUPPORTED": "SW 6D00: the applet does not know the command; a driver "
                                  "that does not fit the card?",
    "SC_ERROR_INCORRECT_PARAMETERS": "SW 6A80/6A86/6B00: the card refused the command's "
                                     "parameters or data.",
    "SC_ERROR_NO_CARD_SUPPORT": "The card, or OpenSC's driver for it, cannot do this: an "
                                "unsupported algorithm, key size or operation. See which "
                                "function returned it first.",
    "SC_ERROR_NOT_ALLOWED": "SW 69xx: command not allowed, or its conditions unmet (key usage, "
                            "life cycle, order of commands).",
    "SC_ERROR_INVALID_CARD": "The card is not what the driver expects.",
    "SC_ERROR_SECURITY_STATUS_NOT_SATISFIED": "SW 6982: the PIN is not verified for this "
                                              "operation; becomes CKR_USER_NOT_LOGGED_IN.",
    "SC_ERROR_AUTH_METHOD_BLOCKED": "SW 6983: the PIN is blocked; unblock it with the PUK or SO "
                                    "PIN. Becomes CKR_PIN_LOCKED.",
    "SC_ERROR_PIN_CODE_INCORRECT": "Wrong PIN (SW 63Cx: x tries left); becomes "
                                   "CKR_PIN_INCORRECT. Check the tries left before retrying.",
    "SC_ERROR_DATA_OBJECT_NOT_FOUND": "SW 6A88: no such key or data object on the card.",
    "SC_ERROR_NOT_ENOUGH_MEMORY": "The card is full.",
    "SC_ERROR_INVALID_PIN_LENGTH": "The PIN length is outside what the card's PIN object allows.",
    "SC_ERROR_INVALID_ASN1_OBJECT": "OpenSC could not parse data read from the card: a card "
                                    "personalised by other software, or a driver bug.",
    "SC_ERROR_NOT_SUPPORTED": "Not supported by OpenSC or this card's driver; becomes "
                              "CKR_FUNCTION_NOT_SUPPORTED.",
    "SC_ERROR_WRONG_CARD": "The chosen driver does not support this card.",
    "SC_ERROR_PKCS15_APP_NOT_FOUND": "No PKCS#15 application OpenSC can use: the card is not "
                                     "initialised, or needs a specific driver or emulator.",
}

SCARD = {
    "SCARD_E_NO_SMARTCARD": "No card in the reader, or the card is not seated.",
    "SCARD_W_REMOVED_CARD": "The card was removed.",
    "SCARD_E_NO_SERVICE": "pcscd is not running or not reachable (socket activation, a "
                          "container without /run/pcscd).",
    "SCARD_E_NO_READERS_AVAILABLE": "No reader: plugged in? reader driver (e.g. libccid) "
                                    "installed? pcscd restarted after installing it?",
    "SCARD_E_SHARING_VIOLATION": "Another process holds the card exclusively or in a "
                                 "transaction (gpg's scdaemon often does).",
    "SCARD_W_RESET_CARD": "Another program reset the card: reconnect. Common when scdaemon and "
                          "OpenSC share a card.",
    "SCARD_E_UNSUPPORTED_FEATURE": "On pcsc-lite usually 'feature not supported': an "
                                   "SCardControl code (PIN pad, escape) the reader or driver "
                                   "lacks. OpenSC logs it while probing and goes on.",
    "SCARD_E_TIMEOUT": "The wait timed out (e.g. SCardGetStatusChange waiting for a card).",
    "SCARD_E_INVALID_HANDLE": "A stale context or card handle: after fork(), after pcscd "
                              "restarted, or after SCardReleaseContext.",
    "SCARD_F_COMM_ERROR": "The client cannot talk to pcscd: client and daemon versions differ "
                          "(Flatpak, container) or pcscd crashed.",
    "SCARD_E_PROTO_MISMATCH": "The requested protocol (T=0/T=1) is not the card's.",
    "SCARD_W_UNRESPONSIVE_CARD": "The card does not answer reset: inserted wrongly, dirty "
                                 "contacts, or a card the reader cannot power.",
    "SCARD_W_UNPOWERED_CARD": "The card has no power: reconnect, or reseat it.",
    "SCARD_E_INSUFFICIENT_BUFFER": "Buffer too small; call again with a bigger one.",
    "SCARD_E_UNKNOWN_READER": "The reader name is unknown (it changes when re-plugged): list "
                              "the readers again.",
    "SCARD_E_READER_UNAVAILABLE": "The reader was unplugged or its driver failed.",
    "SCARD_W_SECURITY_VIOLATION": "Access denied by the system's smart-card policy.",
    "SCARD_E_NOT_TRANSACTED": "SCardEndTransaction without a transaction, or the transaction "
                              "was lost after a reset.",
}

GSK = {
    "GSK_ERROR_BAD_KEYFILE_PASSWORD": "Wrong key database password, or a stash file (.sth) "
                                      "that belongs to another .kdb: re-create the stash "
                                      "(runmqakm / gsk8capicmd -stashpw).",
    "GSK_ERROR_BAD_CERT": "The peer's certificate is not trusted: its CA (and intermediates) "
                          "are missing from the key database, or the certificate is malformed.",
    "GSK_ERROR_BAD_DATE": "A certificate is expired or not yet valid: check both ends, and the "
                          "clocks.",
    "GSK_ERROR_NO_CIPHERS": "No cipher suite in common: CipherSpec on both ends, TLS versions, "
                            "FIPS or Suite B settings.",
    "GSK_ERROR_NO_CERTIFICATE": "No certificate was sent or found: the label is missing "
                                "(MQ: CERTLABL or ibmwebspheremq<name>) or client "
                                "authentication without a personal certificate.",
    "GSK_ERROR_IO": "A socket error during the handshake; often the peer closed it after "
                    "rejecting our certificate or cipher: read the other side's log.",
    "GSK_ERROR_BAD_KEYFILE_LABEL": "The certificate label is not in the key database (labels "
                                   "are case-sensitive).",
    "GSK_ERROR_SOCKET_CLOSED": "The peer closed the connection during the handshake: its log "
                               "has the reason.",
    "GSK_KEYRING_OPEN_ERROR": "The key database cannot be opened: path, file permissions, or "
                              "(z/OS) access to the RACF key ring.",
    "GSK_NO_KEYFILE_PASSWORD": "No password and no stash file: create the .sth next to the "
                               ".kdb.",
    "GSK_BAD_FORMAT_OR_INVALID_PASSWORD": "The key database is corrupt or the password wrong.",
    "GSK_KEYFILE_IO_ERROR": "The key database file cannot be read: path and permissions.",
    "GSK_ERROR_CERT_VALIDATION": "Certificate validation failed; a GSKit trace (or "
                                 "GSK_LAST_VALIDATION_ERROR) gives the reason.",
    "GSK_ERROR_PKCS11_LIBRARY_NOTLOADED": "GSKit could not load the PKCS#11 module: path, "
                                          "32/64-bit mismatch, or a missing dependency.",
    "GSK_ERROR_PKCS11_TOKEN_LABELMISMATH": "No token with the configured label: compare it "
                                           "with the token label C_GetTokenInfo reports.",
    "GSK_ERROR_PKCS11_TOKEN_NOTPRESENT": "The PKCS#11 token is not present.",
    "GSK_ERROR_PKCS11_TOKEN_BADPASSWORD": "Wrong PIN for the PKCS#11 token; a pkcs11-spy "
                                          "trace shows the C_Login and its CKR.",
    "GSK_ERROR_NO_PRIVATE_KEY": "The certificate's private key is not in the key database or "
                                "token.",
    "GSK_ERROR_SELF_SIGNED": "A self-signed certificate is not trusted: add it to the peer's "
                             "key database.",
    "GSK_IBMI_ERROR_NOT_TRUSTED_ROOT": "The CA is not trusted for this application in DCM.",
}

ATR = ("Names come from pcsc-tools' smartcard_list.txt when it is installed; ATR_analysis "
       "explains the bytes in detail.")

# PKCS#11 names people look up because a trace shows them.
CK = {
    "CKA_EC_PARAMS": "DER: usually the OID of a named curve (pkspy shows the curve's name); "
                     "Edwards and Montgomery keys may carry a PrintableString instead.",
    "CKA_EC_POINT": "DER OCTET STRING around the point (04 || X || Y uncompressed). Some "
                    "modules store the bare point; programs that expect one form fail on the "
                    "other.",
    "CKA_ID": "Links a private key, its public key and its certificate: the three should share "
              "one CKA_ID. A mismatch is a common reason a program finds a certificate but no "
              "key.",
    "CKA_VALUE": "On a certificate object its DER; on secret and private keys the secret itself "
                 "(pkspy never prints it).",
    "CKA_ALWAYS_AUTHENTICATE": "When true, every use of the key needs C_Login(CKU_CONTEXT_"
                               "SPECIFIC) right after the Init, or the operation fails with "
                               "CKR_USER_NOT_LOGGED_IN.",
    "CKA_SENSITIVE": "When true the key's secret attributes can never be read "
                     "(CKR_ATTRIBUTE_SENSITIVE).",
    "CKM_ECDSA": "Raw ECDSA: the caller hashes and passes the digest. To sign a whole message "
                 "use CKM_ECDSA_SHA256 and friends; the signature is r || s, not DER.",
    "CKM_RSA_PKCS": "PKCS#1 v1.5: for signing, the caller passes a DigestInfo (hash OID + "
                    "hash); input longer than the modulus minus 11 bytes fails with "
                    "CKR_DATA_LEN_RANGE.",
    "CKM_RSA_PKCS_PSS": "RSA-PSS over a digest the caller computed; the CK_RSA_PKCS_PSS_PARAMS "
                        "hash, MGF and salt length must match the digest.",
    "CKU_CONTEXT_SPECIFIC": "The login for one operation with a CKA_ALWAYS_AUTHENTICATE key, "
                            "right after its Init.",
    "CKF_USER_PIN_COUNT_LOW": "At least one wrong user PIN since the last good one: fewer tries "
                              "remain.",
    "CKF_USER_PIN_FINAL_TRY": "One more wrong user PIN blocks it.",
    "CKF_USER_PIN_LOCKED": "The user PIN is blocked: unblock it with the SO PIN / PUK.",
    "CKF_SO_PIN_LOCKED": "The SO PIN is blocked: usually only re-initialising the token helps.",
}
