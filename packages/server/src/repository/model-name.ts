/** A model name as a repository folder may have it: nothing a path or a label could be abused with. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
