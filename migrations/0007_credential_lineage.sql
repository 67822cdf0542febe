-- Credential lineage: which token minted a token, which certificate a
-- renewal replaced.
--
-- Tokens (CreateApiToken, GetKubeconfig).
--
-- A token minted with another token records it as its parent. Revoking a
-- token revokes everything minted from it, transitively, and authentication
-- honours a token only while none of its ancestors is revoked or expired,
-- so a leaked token's offspring die with it even if one was minted in the
-- instant before the revocation. Tokens minted by the control plane itself
-- (the bootstrap token, per-process service tokens) have no parent.
-- Deleting a user revokes (then, by this key, detaches) the tokens minted
-- from that user's tokens.

ALTER TABLE tenancy.api_tokens
    ADD COLUMN parent_id uuid REFERENCES tenancy.api_tokens (id) ON DELETE SET NULL;
CREATE INDEX api_tokens_parent ON tenancy.api_tokens (parent_id) WHERE parent_id IS NOT NULL;

-- Agent certificates (RenewCertificate, Renew over the SiteSync stream).
--
-- Renewing a certificate supersedes it: the old one gets a revoke_time a
-- short grace ahead (sites.renewal_grace_secs, for the stream it carries)
-- and the new one records the serial it replaces. A certificate is renewed
-- at most once (the unique index), so a stolen certificate cannot be
-- renewed beside the real agent: whoever renews second is refused (unless
-- it proves the key of the successor, i.e. it is the same agent asking
-- again after a lost answer).
ALTER TABLE sites.issued_certs ADD COLUMN replaces text;
CREATE UNIQUE INDEX issued_certs_replaces ON sites.issued_certs (replaces) WHERE replaces IS NOT NULL;
