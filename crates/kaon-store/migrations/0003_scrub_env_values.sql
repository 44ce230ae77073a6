-- Memo key records written before format 2 kept step environment values in
-- plain text (they may be secrets). Format 2 keeps only keyed digests; the
-- old records lose their environment, so `kaon cache explain` against them
-- shows each variable as added instead of printing a value.
-- Overwrite the freed space too, not only unlink it from the tree.
PRAGMA secure_delete = ON;
UPDATE memo_keys
SET parts = json_set(parts, '$.env', json('[]'))
WHERE json_valid(parts)
  AND coalesce(json_extract(parts, '$.version'), 1) < 2
  AND json_type(parts, '$.env') = 'array';
