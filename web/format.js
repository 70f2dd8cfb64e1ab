// Numbers and times as the dashboard shows them.

/** 0.4 s, 12 s, 3 m 05 s, 2 h 10 m; null as an en dash. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    return `${m} m ${String(Math.round(s - m * 60)).padStart(2, '0')} s`;
  }
  const hours = Math.floor(s / 3600);
  return `${hours} h ${String(Math.floor((s - hours * 3600) / 60)).padStart(2, '0')} m`;
}

/** Seconds from one ISO time to another (or to now). */
export function secondsBetween(from, to) {
  if (!from) return null;
  const end = to ? Date.parse(to) : Date.now();
  return (end - Date.parse(from)) / 1000;
}

/** "12 s ago", from an ISO time. */
export function ago(iso) {
  if (!iso) return '–';
  return `${duration(secondsBetween(iso, null))} ago`;
}

/** A local date and time to the second, for title attributes and detail lists. */
export function when(iso) {
  if (!iso) return '–';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** A clock time for log lines: 14:03:07.120. */
export function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** 0.123 → "12.3 %"; null as an en dash. */
export function percent(share) {
  if (share === null || share === undefined || !Number.isFinite(share)) return '–';
  return `${(share * 100).toFixed(share === 0 || share === 1 ? 0 : 1)} %`;
}

/** 2048 MiB → "2 GiB"; 512 → "512 MiB". */
export function mebibytes(mib) {
  if (mib === null || mib === undefined) return '–';
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}
