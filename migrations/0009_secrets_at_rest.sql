-- Secrets at rest: the gateway stores the body of every Secret (in
-- vk8s.objects.body, vk8s.changes.body and prev_body) sealed, as one JSON
-- member
--   {"manifold.dev/sealed": {"v": 1, "key": <key name>, "kid": <key id>,
--                            "dek": <wrapped data key>, "nonce": ..., "ct": ...}}
-- (AES-256-GCM under a data key wrapped by a key-encryption key from
-- encryption.key_files; see services/vk8s-gateway/src/encryption). Bodies
-- of other kinds stay plain JSON. Rows written before this migration stay
-- plain until `manifold rotate-encryption` seals them; the schema does not
-- change.
--
-- These indexes serve `manifold rotate-encryption` (find the Secrets not
-- sealed with the primary key, in key order) and the start-up report of
-- which keys the stored Secrets use, without scanning every object.

CREATE INDEX objects_secrets_by_key ON vk8s.objects
    (vcluster_id, namespace, name, (body #>> '{manifold.dev/sealed,kid}'))
    WHERE api_group = '' AND kind = 'Secret';
