export interface CameraSource {
  id: string;
  /** rtsp://, rtsps:// or a file path / file:// URL. */
  url: string;
  transport: 'tcp' | 'udp';
  /** Output size: the detector's input size (ffmpeg scales, so detection never resizes). */
  width: number;
  height: number;
  /** Detection frames per second (ffmpeg drops the rest before conversion). */
  fps: number;
  /** ffmpeg's socket I/O timeout: a frozen camera makes ffmpeg exit instead of hanging forever. */
  ioTimeoutMs: number;
  /** For files: pace at the native frame rate (like a live camera). */
  realtime: boolean;
  /** For files: replay forever; false: play once, then the camera is `ended` (no respawn). */
  loop: boolean;
}

export function isNetworkSource(url: string): boolean {
  return /^rtsps?:\/\//i.test(url);
}

/** Input options for ffmpeg: fast first frame, bounded I/O wait. */
export function inputOptions(src: CameraSource): string[] {
  if (isNetworkSource(src.url)) {
    return [
      '-rtsp_transport',
      src.transport,
      '-timeout',
      String(src.ioTimeoutMs * 1000), // microseconds
      // Small probe: the first frame arrives in ~0.5 s instead of ~2.4 s.
      '-probesize',
      '32',
      '-analyzeduration',
      '0',
      '-fflags',
      'nobuffer',
      '-flags',
      'low_delay',
    ];
  }
  return [...(src.loop ? ['-stream_loop', '-1'] : []), ...(src.realtime ? ['-re'] : [])];
}

/** Output options: scaled rgb24 rawvideo at the detection rate on stdout, no audio. */
export function outputOptions(src: CameraSource): string[] {
  return [
    '-an',
    '-sn',
    '-dn',
    '-vf',
    `fps=${src.fps},scale=${src.width}:${src.height}:flags=fast_bilinear`,
    '-pix_fmt',
    'rgb24',
    '-f',
    'rawvideo',
  ];
}

/** Strips credentials from a camera URL for logs and status reports. */
export function redactUrl(url: string): string {
  return url.replace(/^(\w+:\/\/)[^@/]*@/, '$1***@');
}
