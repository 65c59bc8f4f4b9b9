// Camera capture for face enrolment: the frame becomes the form's photo file, so the server runs the
// same checks as for an uploaded photo. Browsers allow the camera on https:// or localhost only.
(function () {
  "use strict";
  var start = document.getElementById("start-camera");
  if (!start) return;
  var box = document.getElementById("camera-box");
  var video = document.getElementById("camera");
  var canvas = document.getElementById("snapshot");
  var input = document.getElementById("photo-input");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { start.hidden = true; return; }
  start.addEventListener("click", function () {
    navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 960, facingMode: "user" } })
      .then(function (stream) { video.srcObject = stream; box.hidden = false; start.hidden = true; })
      // The words come from the page (its language): "... {error}".
      .catch(function (err) { window.alert(start.dataset.error.replace("{error}", err.message)); });
  });
  document.getElementById("take-photo").addEventListener("click", function () {
    canvas.width = video.videoWidth || 640; canvas.height = video.videoHeight || 480;
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob(function (blob) {
      var dt = new DataTransfer();
      dt.items.add(new File([blob], "camera.jpg", { type: "image/jpeg" }));
      input.files = dt.files;
      canvas.hidden = false;
    }, "image/jpeg", 0.92);
  });
})();
