// @ts-check
// file: examples/ocr-service/test-images.mjs
// Renders the OCR test images from known text (Pango through sharp, DejaVu fonts, no downloads) and writes
// them with their ground truth to `images/manifest.json`. Run it as often as you like: it renders only when
// the manifest is missing, stale or an image is gone, and every render is byte-for-byte the same.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

/**
 * @typedef {object} ImageSpec
 * @property {string} name file name without extension
 * @property {number} width
 * @property {number} height
 * @property {string} font Pango font family (and style), e.g. `DejaVu Sans Bold`
 * @property {number} size font size in pixels (rendered at 72 dpi, so points equal pixels)
 * @property {string} ink text colour
 * @property {string} paper background colour
 * @property {number} noise standard deviation of the Gaussian noise added to every channel (0: none)
 * @property {'png' | 'jpeg'} format
 * @property {string[]} lines the ground truth, top to bottom
 */

/**
 * @typedef {object} ManifestLine
 * @property {string} text
 * @property {[number, number, number, number]} rect where the line's text image was placed: left, top, right, bottom
 */

/**
 * @typedef {object} ManifestImage
 * @property {string} file
 * @property {number} width
 * @property {number} height
 * @property {ManifestLine[]} lines
 */

/** @type {ImageSpec[]} */
export const SPECS = [
  spec('total-320x120', 320, 120, 'DejaVu Sans', 22, 'png', ['Total: $42.17']),
  spec('memo-480x160', 480, 160, 'DejaVu Serif', 24, 'png', ['Meeting moved to', 'Room 4B at 3:30 PM'], {
    paper: '#f4f1ea',
  }),
  spec(
    'shipping-640x240',
    640,
    240,
    'DejaVu Sans',
    26,
    'png',
    ['Order 88213 shipped', 'Carrier: DHL Express', 'Delivery expected June 12'],
    { paper: '#e6e6e6', ink: '#262626', noise: 10 },
  ),
  spec('shell-640x480', 640, 480, 'DejaVu Sans Mono', 22, 'png', [
    'ssh deploy@10.0.4.21',
    'cd /srv/app/releases',
    'git pull origin main',
    'npm run build',
  ]),
  spec('pangram-800x600', 800, 600, 'DejaVu Sans', 30, 'jpeg', [
    'The quick brown fox',
    'jumps over the lazy dog',
    'Pack my box with five',
    'dozen liquor jugs',
    'Sphinx of black quartz',
  ]),
  spec(
    'invoice-1024x768',
    1024,
    768,
    'DejaVu Serif',
    32,
    'png',
    [
      'Invoice No. 2024-0917',
      'Date: 17 September 2024',
      'Customer: Acme Tools Ltd',
      'Item A-12 x 3 units',
      'Subtotal 1,284.50 EUR',
      'Thank you for your order',
    ],
    { paper: '#f7f7f2', ink: '#1e1e1e', noise: 6 },
  ),
  spec('letter-1280x960', 1280, 960, 'DejaVu Sans', 36, 'png', [
    'Dear customer, your parcel arrived at',
    'the local depot this morning. Please',
    'collect it before Friday 6 PM with a',
    'photo ID and this notice. Opening',
    'hours are Monday to Saturday from',
    '8 AM to 7 PM. For questions call',
    'our service line on 0800 555 0199',
    'or write to help@example.com.',
  ]),
  spec(
    'notes-960x720',
    960,
    720,
    'DejaVu Sans',
    20,
    'png',
    [
      'Release notes for version 3.2.1',
      'Fixed a crash when saving large files',
      'Startup is 40% faster on old laptops',
      'New export to CSV and PDF formats',
      'Dark mode follows the system setting',
      'Removed the legacy sync option',
      'Thanks to all 57 contributors',
    ],
    { paper: '#eeeeee', ink: '#333333', noise: 8 },
  ),
  spec('banner-1280x480', 1280, 480, 'DejaVu Sans Bold', 48, 'jpeg', [
    'GRAND OPENING SALE',
    'Up to 70% off all items',
    'Saturday 9 AM - 5 PM',
  ]),
  spec('label-400x300', 400, 300, 'DejaVu Sans', 16, 'png', ['Batch 7731-B', 'Best before 03/2026'], {
    paper: '#fafafa',
  }),
];

/**
 * @param {string} name @param {number} width @param {number} height @param {string} font @param {number} size
 * @param {'png' | 'jpeg'} format @param {string[]} lines
 * @param {{ paper?: string, ink?: string, noise?: number }} [look]
 * @returns {ImageSpec}
 */
function spec(name, width, height, font, size, format, lines, look = {}) {
  return { name, width, height, font, size, format, lines, ink: '#111111', paper: '#ffffff', noise: 0, ...look };
}

/** Bumped whenever the rendering below changes, so stale images are rendered again. */
const RENDERER_VERSION = 2;

/** The folder the images are written to by default: `images/` beside this file. */
export const IMAGES_DIR = fileURLToPath(new URL('./images/', import.meta.url));

/** @param {string} text */
function escapeMarkup(text) {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Gaussian noise from a seeded generator (mulberry32 + Box-Muller): libvips' own noise is not seeded, and the
 * images must be identical on every run.
 * @param {Buffer} rgb @param {number} sigma @param {number} seed
 */
function addNoise(rgb, sigma, seed) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  for (let i = 0; i < rgb.length; i++) {
    const gauss = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    rgb[i] = Math.max(0, Math.min(255, Math.round((rgb[i] ?? 0) + sigma * gauss)));
  }
}

/**
 * Renders one image: each line is its own text image, placed at a left margin with a leading of 1.6 times the
 * font size, centred vertically, so the ground-truth rectangle of every line is known.
 * @param {ImageSpec} s
 * @returns {Promise<{ bytes: Buffer, lines: ManifestLine[] }>}
 */
export async function renderImage(s) {
  const leading = Math.round(s.size * 1.6);
  const rendered = await Promise.all(
    s.lines.map((line) =>
      sharp({
        text: {
          // Ligatures off: "fi" drawn as one glyph would not be the two characters of the ground truth.
          text: `<span foreground="${s.ink}" font_features="liga=0">${escapeMarkup(line)}</span>`,
          font: `${s.font} ${s.size}`,
          dpi: 72,
          rgba: true,
        },
      })
        .png()
        .toBuffer({ resolveWithObject: true }),
    ),
  );
  const left = Math.round(s.width * 0.06);
  const blockHeight = leading * (s.lines.length - 1) + s.size;
  const top0 = Math.round((s.height - blockHeight) / 2);
  /** @type {ManifestLine[]} */
  const lines = [];
  const overlays = rendered.map(({ data, info }, i) => {
    const top = top0 + i * leading;
    if (left + info.width > s.width || top + info.height > s.height) {
      throw new RangeError(
        `Line ${i} of ${s.name} (${info.width}x${info.height} at ${left},${top}) overflows the image`,
      );
    }
    lines.push({ text: s.lines[i] ?? '', rect: [left, top, left + info.width, top + info.height] });
    return { input: data, left, top };
  });
  const composed = await sharp({ create: { width: s.width, height: s.height, channels: 3, background: s.paper } })
    .composite(overlays)
    .removeAlpha()
    .raw()
    .toBuffer();
  if (s.noise > 0) addNoise(composed, s.noise, seedOf(s.name));
  const image = sharp(composed, { raw: { width: s.width, height: s.height, channels: 3 } });
  const bytes = await (s.format === 'jpeg' ? image.jpeg({ quality: 90 }) : image.png()).toBuffer();
  return { bytes, lines };
}

/** @param {string} name */
function seedOf(name) {
  return createHash('sha256').update(name).digest().readUInt32LE(0);
}

/** The hash of everything that decides the images' bytes. */
function specHash() {
  return createHash('sha256')
    .update(JSON.stringify({ RENDERER_VERSION, SPECS, sharp: sharp.versions }))
    .digest('hex');
}

/**
 * Writes every image and `manifest.json` to `dir` unless the manifest there is current and every image exists.
 * Files are written under a temporary name and renamed, so a reader never sees half an image.
 * @param {string} [dir]
 * @returns {Promise<{ dir: string, images: ManifestImage[], rendered: boolean }>}
 */
export async function prepareTestImages(dir = IMAGES_DIR) {
  const manifestPath = join(dir, 'manifest.json');
  const hash = specHash();
  if (existsSync(manifestPath)) {
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    /** @type {ManifestImage[]} */
    const images = manifest.images;
    if (manifest.hash === hash && images.every((image) => existsSync(join(dir, image.file)))) {
      return { dir, images, rendered: false };
    }
  }
  mkdirSync(dir, { recursive: true });
  /** @type {ManifestImage[]} */
  const images = [];
  for (const s of SPECS) {
    const { bytes, lines } = await renderImage(s);
    const file = `${s.name}.${s.format === 'jpeg' ? 'jpg' : 'png'}`;
    writeAtomically(join(dir, file), bytes);
    images.push({ file, width: s.width, height: s.height, lines });
  }
  writeAtomically(manifestPath, `${JSON.stringify({ hash, images }, null, 1)}\n`);
  return { dir, images, rendered: true };
}

/** @param {string} path @param {string | Buffer} contents */
function writeAtomically(path, contents) {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, contents);
  renameSync(temporary, path);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { dir, images, rendered } = await prepareTestImages();
  process.stdout.write(`${rendered ? 'Rendered' : 'Up to date:'} ${images.length} images in ${dir}\n`);
}
