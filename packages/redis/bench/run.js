import './remote.js';
