// The requests-per-day chart: inline SVG built here (no library, no inline style), one bar per
// UTC day of the last `days`, a day without a count drawn as 0.

import {svg} from './dom.js';

const WIDTH = 720;
const HEIGHT = 220;
const PAD = {top: 12, right: 12, bottom: 28, left: 44};

/** `YYYY-MM-DD` of a UTC day. */
function dayKey(date) {
  return date.toISOString().slice(0, 10);
}

/** The last `days` UTC days up to `today`, each with its count (0 when missing). */
export function series(daily, days, today = new Date()) {
  const counts = new Map((daily || []).map((d) => [d.day, d.count]));
  const end = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
  const out = [];
  for (let i = days - 1; i >= 0; i--) {
    const day = dayKey(new Date(end - i * 86400000));
    out.push({day, count: counts.get(day) || 0});
  }
  return out;
}

/** A "nice" axis maximum at or above `max`: 1, 2 or 5 times a power of ten. */
function niceMax(max) {
  if (max <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= max) return step * power;
  }
  return 10 * power;
}

function compact(n) {
  return new Intl.NumberFormat(undefined, {notation: 'compact'}).format(n);
}

export function usageChart(daily, {days = 30, today = new Date()} = {}) {
  const data = series(daily, days, today);
  const total = data.reduce((s, d) => s + d.count, 0);
  const top = niceMax(Math.max(...data.map((d) => d.count)));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / data.length;
  const barW = Math.max(2, slot * 0.7);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  const chart = svg('svg', {
    class: 'chart', id: 'usage-chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img',
    'aria-label': `Requests per day over the last ${days} days: ${total} in all`,
    preserveAspectRatio: 'xMidYMid meet',
  });
  for (let i = 0; i <= 4; i++) {
    const v = (top / 4) * i;
    chart.append(
      svg('line', {class: i === 0 ? 'axis' : 'grid', x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v)}),
      svg('text', {class: 'tick', x: PAD.left - 8, y: y(v) + 4, 'text-anchor': 'end'}, compact(v)));
  }
  data.forEach((d, i) => {
    const x = PAD.left + i * slot + (slot - barW) / 2;
    const h = (d.count / top) * plotH;
    const bar = svg('rect', {
      class: d.count ? 'bar' : 'bar bar-zero', x, y: y(d.count) - (d.count ? 0 : 1),
      width: barW, height: Math.max(h, 1), rx: 2, 'data-day': d.day, 'data-count': d.count,
    }, svg('title', {}, `${d.day}: ${d.count.toLocaleString()} request${d.count === 1 ? '' : 's'}`));
    chart.append(bar);
    if (i % 5 === (data.length - 1) % 5) {
      chart.append(svg('text', {class: 'tick', x: x + barW / 2, y: HEIGHT - 8, 'text-anchor': 'middle'}, d.day.slice(5)));
    }
  });
  return chart;
}
