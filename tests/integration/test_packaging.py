"""
Units and packages (issue 7): `systemd-analyze verify` passes on every unit in
systemd/; CPack builds the three .deb packages (into a temporary directory, so
`make package` is not disturbed); they unpack into a scratch root where each
binary answers --version, the files, owners, modes, conffiles, maintainer
scripts and Depends are as intended, and the sysusers.d/tmpfiles.d lines make
the kiln user and its directories (0750 kiln:kiln) in that root. The packaged
configs document every key the daemons know, and start as shipped.
"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()
SRC = kiln.SRC
BUILD = os.path.dirname(os.path.abspath(kiln.BIN))


def units():
    d = os.path.join(SRC, 'systemd')
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if f.endswith(('.service', '.timer')))


def test_units_verify():
    sa = shutil.which('systemd-analyze')
    if not sa:
        print('SKIP: systemd-analyze is absent (Debian package: systemd)')
        return
    names = [os.path.basename(u) for u in units()]
    for want in ('kiln-coordinator.service', 'kiln-agent.service', 'kiln-agent@.service'):
        assert want in names, names
    # the units name /usr/bin/kiln-*: verify copies that name the binaries just built
    d = kiln.tempdir('kiln-units-')
    for u in units():
        text = open(u).read()
        for b in ('kiln-coordinator', 'kiln-agent'):
            text = text.replace('/usr/bin/%s ' % b, '%s ' % kiln.binary(b))
        with open(os.path.join(d, os.path.basename(u)), 'w') as f:
            f.write(text)
    for u in sorted(os.listdir(d)):
        r = subprocess.run([sa, 'verify', '--man=no', os.path.join(d, u)],
                           capture_output=True, text=True, timeout=60)
        out = (r.stdout + r.stderr).strip()
        assert r.returncode == 0 and not out, '%s: %s' % (u, kiln.describe(r))
    for u in units():
        text = open(u).read()
        if not u.endswith('.service') or 'backup' in u:
            continue
        for key in ('Type=notify', 'WatchdogSec=', 'User=kiln', 'StateDirectory=',
                    'CacheDirectory=', 'RuntimeDirectory=', 'NoNewPrivileges=yes',
                    'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes',
                    'RestrictAddressFamilies=', 'LimitNOFILE=', 'ExecReload='):
            assert re.search('^' + re.escape(key), text, re.M), (u, key)
        assert '--registration-token' not in re.findall('^ExecStart=.*', text, re.M)[0], u


def build_packages():
    cpack = shutil.which('cpack')
    assert cpack, 'cpack is absent'
    assert os.path.exists(os.path.join(BUILD, 'CPackConfig.cmake')), BUILD
    out = kiln.tempdir('kiln-packages-')
    r = subprocess.run([cpack, '-G', 'DEB', '-B', out, '--config',
                        os.path.join(BUILD, 'CPackConfig.cmake')], cwd=BUILD,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, kiln.describe(r)
    debs = {}
    for f in os.listdir(out):
        if f.endswith('.deb'):
            debs[f.split('_')[0]] = os.path.join(out, f)
    assert sorted(debs) == ['kiln', 'kiln-agent', 'kiln-coordinator'], os.listdir(out)
    return debs


def deb_field(deb, field):
    return subprocess.run(['dpkg-deb', '-f', deb, field], capture_output=True, text=True,
                          check=True).stdout.strip()


def deb_files(deb):
    """{path: (mode string, owner/group)} of the data archive."""
    lines = subprocess.run(['dpkg-deb', '-c', deb], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    files = {}
    for line in lines:
        parts = line.split(None, 5)
        files[parts[5].lstrip('.').split(' -> ')[0].rstrip('/') or '/'] = (parts[0], parts[1])
    return files


def test_packages():
    if not shutil.which('dpkg-deb'):
        print('SKIP: dpkg-deb is absent')
        return
    debs = build_packages()
    root = kiln.tempdir('kiln-root-')
    for deb in debs.values():
        subprocess.run(['dpkg-deb', '-x', deb, root], check=True, timeout=60)
    for b in ('kiln', 'kiln-agent', 'kiln-coordinator'):
        r = subprocess.run([os.path.join(root, 'usr/bin', b), '--version'], capture_output=True,
                           text=True, timeout=15)
        assert r.returncode == 0 and r.stdout.startswith(b + ' '), kiln.describe(r)

    want = {
        'kiln-coordinator': {
            '/usr/bin/kiln-coordinator': '-rwxr-xr-x',
            '/usr/lib/systemd/system/kiln-coordinator.service': '-rw-r--r--',
            '/usr/lib/systemd/system/kiln-coordinator-backup.service': '-rw-r--r--',
            '/usr/lib/systemd/system/kiln-coordinator-backup.timer': '-rw-r--r--',
            '/usr/lib/sysusers.d/kiln-coordinator.conf': '-rw-r--r--',
            '/usr/lib/tmpfiles.d/kiln-coordinator.conf': '-rw-r--r--',
            '/etc/kiln/coordinator.yaml': '-rw-r--r--',
        },
        'kiln-agent': {
            '/usr/bin/kiln-agent': '-rwxr-xr-x',
            '/usr/lib/systemd/system/kiln-agent.service': '-rw-r--r--',
            '/usr/lib/systemd/system/kiln-agent@.service': '-rw-r--r--',
            '/usr/lib/sysusers.d/kiln-agent.conf': '-rw-r--r--',
            '/usr/lib/tmpfiles.d/kiln-agent.conf': '-rw-r--r--',
            '/etc/kiln/agent.yaml': '-rw-r--r--',
        },
        'kiln': {'/usr/bin/kiln': '-rwxr-xr-x'},
    }
    for name, files in want.items():
        have = deb_files(debs[name])
        for path, mode in files.items():
            assert path in have, (name, path, sorted(have))
            assert have[path] == (mode, 'root/root'), (name, path, have[path])
        for path, (mode, owner) in have.items():
            assert owner == 'root/root', (name, path, owner)
            assert 's' not in mode and mode[8] != 'w', (name, path, mode)  # no setuid, o-w
        # nothing but what we meant: binaries, units, sysusers/tmpfiles, configs, docs
        for path in have:
            assert re.match(r'^/(etc(/kiln.*)?|usr(/bin.*|/lib(/systemd.*|/sysusers\.d.*|'
                            r'/tmpfiles\.d.*)?|/share(/doc.*)?)?)$', path), (name, path)
        depends = deb_field(debs[name], 'Depends')
        for lib in ('libc6', 'libnng1', 'libgit2-1.5', 'libssl3', 'libyaml-0-2'):
            assert lib in depends, (name, lib, depends)
        ctrl = subprocess.run(['dpkg-deb', '--ctrl-tarfile', debs[name]], capture_output=True,
                              check=True).stdout
        listing = subprocess.run(['tar', '-tvf', '-'], input=ctrl, capture_output=True,
                                 check=True).stdout.decode()
        if name != 'kiln':
            assert 'systemd | adduser' in depends, depends
            assert re.search(r'^-rwxr-xr-x .* \./postinst$', listing, re.M), listing
            assert re.search(r'\./conffiles$', listing, re.M), listing
            scripts = kiln.tempdir('kiln-ctrl-')
            subprocess.run(['dpkg-deb', '-e', debs[name], scripts], check=True)
            conf = open(os.path.join(scripts, 'conffiles')).read().split()
            assert conf == ['/etc/kiln/%s.yaml' % name.split('-')[1]], conf
            post = open(os.path.join(scripts, 'postinst')).read()
            code = '\n'.join(l for l in post.splitlines() if not l.lstrip().startswith('#'))
            assert 'systemd-sysusers' in post and 'adduser' in post, post
            # enables and starts nothing without the administrator
            assert not re.search(r'systemctl\s+(--\S+\s+)*(enable|start)\b', code), post
            assert not re.search(r'deb-systemd-helper\s+enable', code), post
            for s in os.listdir(scripts):
                if s in ('preinst', 'postinst', 'prerm', 'postrm'):
                    r = subprocess.run(['sh', '-n', os.path.join(scripts, s)],
                                       capture_output=True, text=True)
                    assert r.returncode == 0, (name, s, r.stderr)
    assert 'bash' in deb_field(debs['kiln-agent'], 'Depends')
    assert 'bubblewrap' in deb_field(debs['kiln-agent'], 'Recommends')

    # the user and the directories, made in the scratch root as the scripts make them
    if shutil.which('systemd-sysusers') and shutil.which('systemd-tmpfiles'):
        for f in ('passwd', 'group', 'shadow', 'gshadow'):
            open(os.path.join(root, 'etc', f), 'a').close()
        r = subprocess.run(['systemd-sysusers', '--root=' + root], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, kiln.describe(r)
        pw = [l.split(':') for l in open(os.path.join(root, 'etc/passwd'))]
        kiln_pw = [p for p in pw if p[0] == 'kiln']
        assert kiln_pw and kiln_pw[0][6].strip() == '/usr/sbin/nologin', pw
        uid, gid = int(kiln_pw[0][2]), int(kiln_pw[0][3])
        assert uid < 1000, uid
        r = subprocess.run(['systemd-tmpfiles', '--root=' + root, '--create'],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, kiln.describe(r)
        for d in ('var/lib/kiln', 'var/cache/kiln', 'var/backups/kiln', 'var/lib/kiln-agent',
                  'var/cache/kiln-agent'):
            st = os.stat(os.path.join(root, d))
            assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o750), (d, st)
    else:
        print('SKIP: systemd-sysusers/systemd-tmpfiles absent: user and directories unchecked')

    # the shipped configs, as they are, start the daemons (every key commented = defaults)
    data = kiln.tempdir('kiln-pkgdata-')
    p = subprocess.Popen([os.path.join(root, 'usr/bin/kiln-coordinator'), '--config',
                          os.path.join(root, 'etc/kiln/coordinator.yaml'), '--data', data,
                          '--listen', 'tcp://127.0.0.1:0', '--http', '127.0.0.1:0'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kiln._procs.append(p)
    kiln.wait_for(lambda: os.path.exists(os.path.join(data, 'endpoints.json')) or p.poll(),
                  20, 'the coordinator from the packaged config')
    p.terminate()
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err


def test_configs_document_every_key():
    main = open(os.path.join(SRC, 'coordinator/main.c')).read()
    m = re.search(r'static const char \*const keys\[\] = \{(.*?)\};', main, re.S)
    known = re.findall(r'"([a-z_]+)"', m.group(1))
    assert 'listen' in known and 'log_level' in known, known
    text = open(os.path.join(SRC, 'packaging/coordinator.yaml')).read()
    for k in known:
        assert re.search(r'^#%s:' % k, text, re.M), 'coordinator.yaml does not document ' + k
    main = open(os.path.join(SRC, 'agent/main.c')).read()
    m = re.search(r'static const char \*const keys\[NKEYS\] = \{(.*?)\};', main, re.S)
    keys = re.findall(r'"([a-z_]+)"', m.group(1))
    assert 'coordinator' in keys and 'shutdown_timeout' in keys, keys
    text = open(os.path.join(SRC, 'packaging/agent.yaml')).read()
    for k in keys:
        assert re.search(r'^#%s:' % k, text, re.M), 'agent.yaml does not document ' + k


def main():
    R.run(test_units_verify)
    R.run(test_configs_document_every_key)
    R.run(test_packages)
    R.finish()


if __name__ == '__main__':
    main()
