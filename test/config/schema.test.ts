import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { envNameOf } from '../../src/config/engine.ts';
import { driverSettings, loadHostConfig } from '../../src/config/host-config.ts';
import { KNOWN_ENV, SCHEMA } from '../../src/config/schema.ts';
import { isHearthError } from '../../src/errors.ts';
import { maskSecrets, redactTree, redactUrl, secretValues } from '../../src/redact.ts';

test('docs/configuration.md lists every key of the schema with its environment variable', () => {
  const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'configuration.md'), 'utf8');
  for (const table of SCHEMA) {
    for (const [key, setting] of Object.entries(table.settings)) {
      assert.ok(doc.includes(`\`${table.prefix}${key}\``), `${table.prefix}${key} is missing from docs/configuration.md`);
      if (table.name !== 'pools') assert.ok(doc.includes(`\`${envNameOf(key, setting)}\``), `${envNameOf(key, setting)} is missing from docs/configuration.md`);
    }
  }
});

test('every setting has its own environment variable and a description', () => {
  assert.equal(new Set(KNOWN_ENV).size, KNOWN_ENV.length);
  for (const table of SCHEMA) for (const [key, setting] of Object.entries(table.settings)) assert.ok(setting.description.length > 10, key);
});

test('the host settings come from the environment and flags, each saying where it came from', () => {
  const loaded = loadHostConfig({
    env: { HEARTH_CACHE_DIR: '/c', HEARTH_ACCEL: 'tcg', HOME: '/home/u', XDG_DATA_HOME: '/xdg' },
    flags: { 'cli.driver': 'firecracker' },
  });
  assert.equal(loaded.config.paths.cache, '/c');
  assert.equal(loaded.config.paths.data, '/xdg/hearth');
  assert.equal(loaded.config.qemu.accel, 'tcg');
  assert.equal(loaded.config.cli.driver, 'firecracker');
  assert.deepEqual(loaded.sources.get('cli.driver'), { from: 'flag', name: '--driver' });
  assert.deepEqual(loaded.sources.get('paths.cache'), { from: 'env', name: 'HEARTH_CACHE_DIR' });
  assert.deepEqual(loaded.sources.get('paths.runtime'), { from: 'default' });
  assert.deepEqual(loaded.overrides, ['HEARTH_CACHE_DIR', 'HEARTH_ACCEL']);
  const accel = (() => {
    try {
      loadHostConfig({ env: { HEARTH_ACCEL: 'hvf' } });
    } catch (error) {
      return error;
    }
    return undefined;
  })();
  assert.ok(
    isHearthError(accel, 'HEARTH_ERR_CONFIG') && accel.context.source === 'HEARTH_ACCEL' && /set HEARTH_ACCEL to one of auto, kvm, tcg/.test(accel.fix),
    String(accel),
  );
});

test('the jailer is on with HEARTH_JAILER and then needs both ids; a typo in a driver variable names the nearest', () => {
  assert.equal(driverSettings(loadHostConfig({ env: {} })).jailer, undefined);
  const on = driverSettings(
    loadHostConfig({
      env: { HEARTH_JAILER: '/usr/local/bin/jailer', HEARTH_JAILER_UID: '123', HEARTH_JAILER_GID: '456', HEARTH_JAILER_CHROOT: '/srv/jailer' },
    }),
  );
  assert.deepEqual(on.jailer, { binary: '/usr/local/bin/jailer', uid: 123, gid: 456, chrootBaseDir: '/srv/jailer' });
  assert.throws(
    () => loadHostConfig({ env: { HEARTH_JAILER: '/usr/local/bin/jailer', HEARTH_JAILER_UID: '123' } }),
    (error) => isHearthError(error, 'HEARTH_ERR_CONFIG') && error.context.key === 'jailer.gid' && /HEARTH_JAILER_GID=\$\(id -g firecracker\)/.test(error.fix),
  );
  assert.throws(
    () => loadHostConfig({ env: { HEARTH_JAILER_UID: 'firecracker' } }),
    (error) => isHearthError(error, 'HEARTH_ERR_CONFIG') && /jailer\.uid must be a whole number/.test(error.message),
  );
  assert.throws(
    () => loadHostConfig({ env: { HEARTH_FLINTLOCK_ENDPIONT: 'x:1' } }),
    (error) => isHearthError(error, 'HEARTH_ERR_CONFIG') && /did you mean HEARTH_FLINTLOCK_ENDPOINT\?/.test(error.fix),
  );
  assert.throws(
    () => loadHostConfig({ env: { HEARTH_FLINTLOCK_ROOT_IMAGES: 'debian' } }),
    (error) => isHearthError(error, 'HEARTH_ERR_CONFIG') && /not NAME=IMAGE/.test(error.message),
  );
  // Flintlock settings exist only when one of its variables is given; then its defaults fill the rest.
  assert.equal(driverSettings(loadHostConfig({ env: {} })).flintlock, undefined);
  assert.equal(driverSettings(loadHostConfig({ env: { HEARTH_FLINTLOCK_OWNER: 'ci' } })).flintlock?.endpoint, 'localhost:9090');
});

test('one redactor: trees by secret key, URLs by password, free text by value', () => {
  const tree = { a: { token: 't0ps3cret', list: ['x1', 'x2'], unset: null }, plain: 'visible' };
  assert.deepEqual(redactTree(tree, ['a.token', 'a.list', 'a.unset']), {
    a: { token: '[redacted]', list: ['[redacted]', '[redacted]'], unset: null },
    plain: 'visible',
  });
  assert.equal(tree.a.token, 't0ps3cret', 'the original is left alone');
  assert.deepEqual(secretValues(tree, ['a.token', 'a.list', 'a.unset']), ['t0ps3cret', 'x1', 'x2']);
  assert.equal(redactUrl('postgres://hearth:pw@db:5432/hearth?password=pw2'), 'postgres://hearth:[redacted]@db:5432/hearth?password=redacted');
  assert.equal(redactUrl('/var/lib/hearth/hearth.db'), '/var/lib/hearth/hearth.db');
  assert.equal(maskSecrets('key t0ps3cret and ab', ['t0ps3cret', 'ab']), 'key *** and ab');
  assert.equal(maskSecrets(`token ghp_${'a'.repeat(36)}`, [], { tokenShapes: true }), 'token ***');
});
